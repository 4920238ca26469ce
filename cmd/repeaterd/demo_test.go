package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"repeaterd/repeaters"
	"repeaterd/repeaters/lifecycle"
	"repeaterd/store/storetest"
	"repeaterd/tasks"
)

func demoEngine(t *testing.T) *tasks.Engine {
	t.Helper()
	cfg := tasks.EngineConfig{DatabaseURL: storetest.NewDB(t), RedisURL: storetest.RedisDB(t),
		Sender: repeaters.SenderConfig{AllowPrivateTargets: true}}
	eng, err := tasks.OpenEngine(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

func countRepeaters(t *testing.T, eng *tasks.Engine) int {
	return storetest.Count(t, eng.Store, `SELECT count(*) FROM repeaters`)
}

func TestDemoConstructorHasNoSideEffects(t *testing.T) {
	eng := demoEngine(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	// The constructor neither listens (the address is taken) nor writes.
	d, err := newDemo(eng, slog.Default(), taken.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if n := countRepeaters(t, eng); n != 0 {
		t.Fatalf("newDemo created %d repeaters", n)
	}
	// Start is where it listens: on a taken address it fails, writing nothing.
	if err := d.Start(t.Context()); err == nil {
		t.Fatal("Start listened on a taken address")
	}
	if n := countRepeaters(t, eng); n != 0 {
		t.Fatalf("a failed Start created %d repeaters", n)
	}
	if _, err := newDemo(eng, slog.Default(), "127.0.0.1:0", "ftp://nowhere"); err == nil {
		t.Fatal("a non-HTTP --demo-sink-url was accepted")
	}
}

func TestDemoDeliversAndStops(t *testing.T) {
	eng := demoEngine(t)
	d, err := newDemo(eng, slog.New(slog.NewTextHandler(io.Discard, nil)), "127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	services := []lifecycle.Service{eng.NewDispatcher(), eng.NewWorker(), d}
	if err := lifecycle.StartAll(t.Context(), services); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lifecycle.StopAll(context.Background(), services) })
	if n := countRepeaters(t, eng); n != len(demoRepeaters) {
		t.Fatalf("%d repeaters, want %d", n, len(demoRepeaters))
	}
	wait, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if !d.rcv.WaitCount(wait, "/ok", 3) {
		t.Fatalf("the demo's healthy endpoints received %d deliveries in 30s", d.rcv.Count("/ok"))
	}
	if bad := d.rcv.Stats().BadSignatures; bad != 0 {
		t.Fatalf("%d demo deliveries failed the signature check", bad)
	}

	addr := d.sink.Addr()
	if err := d.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("the receiver still listens after Stop")
	}
	if err := d.Stop(t.Context()); err != nil {
		t.Fatalf("a second Stop: %v", err)
	}
	// A restart reuses the repeaters of the earlier run.
	if err := d.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := countRepeaters(t, eng); n != len(demoRepeaters) {
		t.Fatalf("%d repeaters after a restart, want %d", n, len(demoRepeaters))
	}
}
