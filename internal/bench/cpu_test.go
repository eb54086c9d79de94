package bench

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/onboard/onboard/internal/pgtest"
)

// burn is a query that keeps a backend busy for at least a few hundred
// milliseconds of CPU on any machine this runs on.
const burn = `SELECT count(*) FROM generate_series(1, 1000000) g WHERE md5(g::text) LIKE 'a%'`

func TestSampleCPUCountsThisProcessAndTheServer(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	pool := pgtest.NewPool(t, dbURL, 2)

	start, err := SampleCPU(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	// Work in a backend of the pool, which stays, and in one that exits
	// before the second sample: the postmaster's reaped time covers it.
	if _, err := pool.Exec(ctx, burn); err != nil {
		t.Fatal(err)
	}
	mid, err := SampleCPU(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgtest.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, burn); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// And in this process.
	spin := time.Now()
	for x := 0; time.Since(spin) < 100*time.Millisecond; x++ {
		_ = strconv.Itoa(x)
	}
	if start.Postgres != nil {
		waitExited(t, pid)
	}
	end, err := SampleCPU(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}

	self, _, local := end.Since(start)
	if self < 10*time.Millisecond {
		t.Errorf("this process used %s, want at least the 10ms of a 100ms spin", self)
	}
	if !local {
		t.Skipf("the Postgres server is not on this host (or /proc is unreadable): only this process measured (%s)", self)
	}
	// Each burn takes 0.2s or more of CPU; allow for a much faster machine.
	_, live, _ := mid.Since(start)
	_, exited, _ := end.Since(mid)
	if live < 100*time.Millisecond {
		t.Errorf("the server used %s for a burn in a pooled backend; want at least 100ms", live)
	}
	if exited < 100*time.Millisecond {
		t.Errorf("the server used %s for a burn in a backend that exited; want at least 100ms", exited)
	}
	t.Logf("this process %s; the server %s in a pooled backend, %s in one that exited", self, live, exited)
}

// waitExited waits until the backend pid has exited and been reaped.
func waitExited(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d did not exit within 10s of its connection closing", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSampleCPUCountsContextSwitches(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	pool := pgtest.NewPool(t, dbURL, 1)
	const sleeps = 50

	start, err := SampleCPU(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	// A goroutine locked to its thread blocks the thread itself while it
	// sleeps: each sleep is at least one switch of this process.
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for range sleeps {
			time.Sleep(time.Millisecond)
		}
	}()
	<-done
	// Each statement wakes the pooled backend, and each pg_sleep puts it
	// to sleep again.
	for range sleeps {
		if _, err := pool.Exec(ctx, `SELECT pg_sleep(0.001)`); err != nil {
			t.Fatal(err)
		}
	}
	end, err := SampleCPU(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}

	self, pg, local := end.SwitchesSince(start)
	if self < sleeps {
		t.Errorf("this process switched %d times; want at least the %d of its sleeps", self, sleeps)
	}
	if !local {
		t.Skipf("the Postgres server is not on this host (or /proc is unreadable): only this process measured (%d switches)", self)
	}
	if pg < sleeps {
		t.Errorf("the server switched %d times; want at least one for each of %d sleeping statements", pg, sleeps)
	}
	t.Logf("this process %d switches, the server %d", self, pg)
}

func TestProcSwitchesReadsThisProcess(t *testing.T) {
	n, ok := procSwitches(os.Getpid())
	if !ok {
		t.Skip("/proc is not readable here")
	}
	if n <= 0 {
		t.Errorf("%d context switches for a running test process", n)
	}
	if _, ok := procSwitches(0); ok {
		t.Error("pid 0 read as a process")
	}
}

func TestProcStatReadsThisProcess(t *testing.T) {
	st, ok := procStat(os.Getpid())
	if !ok {
		t.Skip("/proc is not readable here")
	}
	if st.ppid != os.Getppid() {
		t.Errorf("ppid %d, want %d", st.ppid, os.Getppid())
	}
	if st.comm == "" {
		t.Error("empty command name")
	}
	if _, ok := procStat(0); ok {
		t.Error("pid 0 read as a process")
	}
}
