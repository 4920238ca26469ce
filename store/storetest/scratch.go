package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"repeaterd/store"
)

// scratchUser runs a scratch server when the test runs as root (Postgres
// refuses root); scripts/services.sh creates it.
const scratchUser = "repeaterd"

// NewScratchDB starts a Postgres server of the test's own with settings
// appended to its configuration, stopped and removed at cleanup, and
// returns the URL of a migrated database on it. It is for what a shared
// server cannot do: settings that reach every database on the server, such
// as max_slot_wal_keep_size, and whose effects would reach other packages'
// tests. It takes about two seconds.
func NewScratchDB(t testing.TB, settings ...string) string {
	t.Helper()
	bindir, err := postgresBinDir()
	if err != nil {
		t.Fatalf("storetest: no Postgres server binaries (scripts/services.sh up installs them): %v", err)
	}
	// Under /var/tmp, not the test's temp dir: the server's user must reach it.
	dir, err := os.MkdirTemp("/var/tmp", "repeaterd-scratch-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	cred, err := scratchCredential(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bindir, name), args...)
		cmd.Dir = dir
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("storetest: %s: %v\n%s", name, err, out)
		}
	}
	run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
	conf := append([]string{
		"listen_addresses = '127.0.0.1'", "port = " + strconv.Itoa(port),
		"unix_socket_directories = '" + dir + "'",
		"wal_level = logical", "max_replication_slots = 10", "max_wal_senders = 10",
		"fsync = off", "synchronous_commit = off", "full_page_writes = off",
	}, settings...)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(strings.Join(conf, "\n") + "\n")
		err = closeWith(f, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start")
	t.Cleanup(func() { run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
	base := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	ctx := context.Background()
	admin := adminConnTo(t, base)
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE DATABASE repeaterd`); err != nil {
		t.Fatal(err)
	}
	url := withDatabase(base, "repeaterd")
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	return url
}

// postgresBinDir is the newest installed server's bin directory.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("none under /usr/lib/postgresql")
}

func versionOf(bindir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return v
}

// scratchCredential is who runs the server: nobody else when the test is
// not root; scratchUser, owning dir, when it is.
func scratchCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(scratchUser)
	if err != nil {
		return nil, fmt.Errorf("storetest: user %s (scripts/services.sh up creates it): %w", scratchUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func closeWith(f *os.File, err error) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
