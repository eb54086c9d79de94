package bench

import (
	"context"
	"os"
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
