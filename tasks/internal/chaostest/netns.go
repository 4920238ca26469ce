package chaostest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Net is a private IPv4 /24 (10.213.X.0/24) on a bridge of the host, to
// which network namespaces are joined by veth pairs: a process in one sees
// the host at HostIP and the other namespaces, and nothing else (no route
// leads further). A drill runs engine processes in namespaces as if on
// hosts of their own, and partitions one by taking its veth down.
// Everything is named after the test process (rpt<pid>…) and removed when
// the test ends; what a killed run left behind is removed by the next.
type Net struct {
	// HostIP is the host's address on the subnet; services the namespaces
	// must reach (proxies to Postgres and Redis, the receiver) listen on it.
	HostIP string
	t      testing.TB
	tag    string
	prefix string // "10.213.X"
	bridge string
	spaces []*Namespace
}

// Namespace is one network namespace on a Net.
type Namespace struct {
	// Name is the namespace's name (`ip netns exec NAME`).
	Name string
	// IP is its address on the subnet.
	IP       string
	hostLink string
	net      *Net
}

// netTag starts the name of everything a Net creates.
const netTag = "rpt"

// NewNet creates the bridge and subnet, or skips the test where network
// namespaces cannot be made (not root, no ip(8), or not permitted).
func NewNet(t testing.TB) *Net {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("network namespaces need root (`ip netns add`); run the drill as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) is not installed: `apt-get install iproute2`")
	}
	sweepStale()
	n := &Net{t: t, tag: fmt.Sprintf("%s%d", netTag, os.Getpid())}
	probe := n.tag + "x"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("network namespaces are not permitted here: ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	n.prefix = freeSubnet()
	n.HostIP, n.bridge = n.prefix+".1", n.tag+"b"
	t.Cleanup(n.remove)
	n.ip("link", "add", "name", n.bridge, "type", "bridge")
	n.ip("addr", "add", n.HostIP+"/24", "dev", n.bridge)
	n.ip("link", "set", n.bridge, "up")
	return n
}

// Namespace adds a namespace joined to the bridge, its loopback up.
func (n *Net) Namespace() *Namespace {
	n.t.Helper()
	i := len(n.spaces) + 1
	ns := &Namespace{Name: fmt.Sprintf("%sn%d", n.tag, i), IP: fmt.Sprintf("%s.%d", n.prefix, 10+i),
		hostLink: fmt.Sprintf("%sh%d", n.tag, i), net: n}
	peer := fmt.Sprintf("%sp%d", n.tag, i)
	n.spaces = append(n.spaces, ns)
	n.ip("netns", "add", ns.Name)
	n.ip("link", "add", ns.hostLink, "type", "veth", "peer", "name", peer)
	n.ip("link", "set", peer, "netns", ns.Name)
	n.ip("link", "set", ns.hostLink, "master", n.bridge)
	n.ip("link", "set", ns.hostLink, "up")
	n.ip("-n", ns.Name, "addr", "add", ns.IP+"/24", "dev", peer)
	n.ip("-n", ns.Name, "link", "set", peer, "up")
	n.ip("-n", ns.Name, "link", "set", "lo", "up")
	return ns
}

// Exec is the command prefix that runs a program inside the namespace.
func (ns *Namespace) Exec() []string { return []string{"ip", "netns", "exec", ns.Name} }

// Cut takes the namespace's link down on the host side: its packets are
// dropped from now on, with no reset, as when a host drops off the network.
func (ns *Namespace) Cut() { ns.net.ip("link", "set", ns.hostLink, "down") }

// Heal brings the link back up.
func (ns *Namespace) Heal() { ns.net.ip("link", "set", ns.hostLink, "up") }

func (n *Net) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veth pairs go with them) and the
// bridge. Processes still inside keep a namespace alive until they exit,
// so the drill's processes are stopped first (their cleanups run earlier).
func (n *Net) remove() {
	for _, ns := range n.spaces {
		_ = exec.Command("ip", "netns", "del", ns.Name).Run()
		_ = exec.Command("ip", "link", "del", ns.hostLink).Run()
	}
	_ = exec.Command("ip", "link", "del", n.bridge).Run()
}

// staleName matches what a Net creates: rpt<pid> then a kind and a number.
var staleName = regexp.MustCompile(`^` + netTag + `(\d+)[bhpnx]\d*$`)

// sweepStale removes the namespaces and links of Nets whose test process
// is gone (killed before its cleanup ran).
func sweepStale() {
	gone := func(name string) bool {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, _ := strconv.Atoi(m[1])
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return pid != os.Getpid() && os.IsNotExist(err)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && gone(f[0]) {
				_ = exec.Command("ip", "netns", "del", f[0]).Run()
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "7: rpt123h1@if6: <BROADCAST,…"
			if f := strings.Fields(line); len(f) > 1 {
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				if gone(name) {
					_ = exec.Command("ip", "link", "del", name).Run()
				}
			}
		}
	}
}

// freeSubnet picks a 10.213.X prefix no interface of the host uses,
// starting from one derived from the process id so that two runs at once
// do not collide.
func freeSubnet() string {
	out, _ := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	start := os.Getpid() % 200
	for i := range 200 {
		p := fmt.Sprintf("10.213.%d", 20+(start+i)%200)
		if !strings.Contains(string(out), " "+p+".") {
			return p
		}
	}
	return "10.213.250"
}
