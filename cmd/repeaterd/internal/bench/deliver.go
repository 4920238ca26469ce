package bench

import (
	"context"
	"fmt"
	"time"

	"repeaterd/store"
	"repeaterd/store/benchdb"
)

// Shared pieces of the delivery scenarios.

// benchBodyBytes is the size of a delivered payload.
const benchBodyBytes = 256

// makeRepeaters creates perDomain repeaters in each domain, pointed at url(i)
// for the i-th repeater created, with every other setting at its default.
func makeRepeaters(ctx context.Context, st *store.Store, domains []string, perDomain int, url func(i int) string) ([]int64, error) {
	var ids []int64
	for k := range perDomain {
		for _, d := range domains {
			r := &store.Repeater{Domain: d, Name: fmt.Sprintf("%s-r%d", d, k), URL: url(len(ids))}
			if err := st.CreateRepeater(ctx, r); err != nil {
				return nil, err
			}
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

func domainNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%03d", prefix, i+1)
	}
	return out
}

// loadBacklog registers total records spread evenly over ids.
func (e *env) loadBacklog(ctx context.Context, st *store.Store, ids []int64, total int) (int64, error) {
	began := time.Now()
	per := max(1, total/len(ids))
	n, err := benchdb.LoadReady(ctx, st.Pool(), ids, per, benchBodyBytes)
	if err == nil {
		e.logf("loaded %d records over %d repeaters in %s", n, len(ids), time.Since(began).Round(time.Millisecond))
	}
	return n, err
}

// spreadBacklog creates perDomain repeaters in each of domains, all pointed
// at url, and registers total records spread evenly over them.
func (e *env) spreadBacklog(ctx context.Context, st *store.Store, url string, domains []string, perDomain, total int) (int64, error) {
	ids, err := makeRepeaters(ctx, st, domains, perDomain, func(int) string { return url })
	if err != nil {
		return 0, err
	}
	return e.loadBacklog(ctx, st, ids, total)
}

// watch samples count every second from began until it reaches target or
// limit has passed since began, printing the rate every two seconds.
func (e *env) watch(ctx context.Context, label string, began time.Time, limit time.Duration, target int64,
	count func(context.Context) (int64, error)) ([]Sample, error) {
	samples := []Sample{{At: 0, Count: 0}}
	printed := samples[0]
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return samples, ctx.Err()
		case <-t.C:
		}
		n, err := count(ctx)
		if err != nil {
			return samples, err
		}
		s := Sample{At: time.Since(began), Count: n}
		samples = append(samples, s)
		finished := (target > 0 && n >= target) || s.At >= limit
		if s.At-printed.At >= 1900*time.Millisecond || finished {
			e.logf("%-10s t=%5.1fs delivered=%7d  %6.0f/s", label, s.At.Seconds(), n,
				float64(n-printed.Count)/(s.At-printed.At).Seconds())
			printed = s
		}
		if finished {
			return samples, nil
		}
	}
}
