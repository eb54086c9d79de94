package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CPU is the processor time used so far by this process and, when the
// Postgres server runs on this host, by the server's processes. Two
// samples around a measurement say what its work cost the machine, which
// a rate alone does not: on a machine of another pace, the same code
// makes another rate, but its work costs about the same CPU time.
//
// It also counts context switches, voluntary and involuntary: on a
// virtual machine whose hypervisor makes each switch dear (a wake-up, an
// IPI, a return from a blocking syscall), they are much of what a
// message, a statement or a commit costs, and a count of them does not
// change with the machine's pace as time does.
type CPU struct {
	// Self is this process's user and system time.
	Self time.Duration
	// SelfSwitches is this process's context switches, all its threads.
	SelfSwitches int64
	// Postgres is each server process's user and system time by pid, plus
	// the time of the postmaster's children that exited (pid 0); nil when
	// the server is not on this host or /proc cannot be read.
	Postgres map[int]time.Duration
	// PostgresSwitches is each server process's context switches by pid,
	// with Postgres. The kernel keeps no total for reaped children: the
	// switches of a process that exits between two samples are lost.
	PostgresSwitches map[int]int64
}

// clockTick is the unit of the times in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux this runs on).
const clockTick = 10 * time.Millisecond

// SampleCPU samples the CPU time of this process and of the Postgres
// server behind pool: every process pg_stat_activity lists (backends of
// every database and the background processes), and the children the
// postmaster has reaped, so that a backend that exits between two samples
// still counts.
func SampleCPU(ctx context.Context, pool *pgxpool.Pool) (CPU, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return CPU{}, fmt.Errorf("sample cpu: %w", err)
	}
	c := CPU{Self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), SelfSwitches: ru.Nvcsw + ru.Nivcsw}
	rows, err := pool.Query(ctx, `SELECT pid, pid = pg_backend_pid() FROM pg_stat_activity`)
	if err != nil {
		return CPU{}, fmt.Errorf("sample cpu: %w", err)
	}
	var pids []int
	own := -1
	for rows.Next() {
		var pid int
		var mine bool
		if err := rows.Scan(&pid, &mine); err != nil {
			rows.Close()
			return CPU{}, fmt.Errorf("sample cpu: %w", err)
		}
		pids = append(pids, pid)
		if mine {
			own = pid
		}
	}
	if err := rows.Err(); err != nil {
		return CPU{}, fmt.Errorf("sample cpu: %w", err)
	}
	// The server is on this host if the backend serving this query is a
	// postgres process here; its parent is the postmaster.
	st, ok := procStat(own)
	if !ok || st.comm != "postgres" {
		return c, nil
	}
	post, ok := procStat(st.ppid)
	if !ok || post.comm != "postgres" {
		return c, nil
	}
	c.Postgres = map[int]time.Duration{0: post.children}
	c.PostgresSwitches = map[int]int64{}
	for _, pid := range pids {
		if s, ok := procStat(pid); ok && s.comm == "postgres" && s.ppid == st.ppid {
			c.Postgres[pid] = s.self
			if n, ok := procSwitches(pid); ok {
				c.PostgresSwitches[pid] = n
			}
		}
	}
	return c, nil
}

// Since returns the CPU time this process and the Postgres server used
// between start and c; postgres is false when either sample could not see
// the server. A backend that started between the samples counts whole, one
// that exited counts through the postmaster's reaped time (whole too: the
// part before start is counted twice, which only a pool that replaces its
// connections mid-measurement would notice).
func (c CPU) Since(start CPU) (self, pg time.Duration, postgres bool) {
	self = c.Self - start.Self
	if c.Postgres == nil || start.Postgres == nil {
		return self, 0, false
	}
	for pid, t := range c.Postgres {
		pg += t - start.Postgres[pid]
	}
	return self, pg, true
}

// SwitchesSince returns the context switches of this process and of the
// Postgres server between start and c, with postgres as Since gives it. A
// server process that started between the samples counts whole; one that
// exited does not count at all (see PostgresSwitches), which only a pool
// that replaces its connections mid-measurement would notice.
func (c CPU) SwitchesSince(start CPU) (self, pg int64, postgres bool) {
	self = c.SelfSwitches - start.SelfSwitches
	if c.PostgresSwitches == nil || start.PostgresSwitches == nil {
		return self, 0, false
	}
	for pid, n := range c.PostgresSwitches {
		pg += n - start.PostgresSwitches[pid]
	}
	return self, pg, true
}

// procSwitches reads the voluntary and involuntary context switches of a
// single-threaded process (a Postgres server process) from
// /proc/<pid>/status.
func procSwitches(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	var n int64
	found := 0
	for line := range strings.Lines(string(b)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "voluntary_ctxt_switches" && name != "nonvoluntary_ctxt_switches") {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, false
		}
		n += v
		found++
	}
	return n, found == 2
}

type stat struct {
	comm     string
	ppid     int
	self     time.Duration // user + system
	children time.Duration // user + system of reaped children
}

// procStat reads /proc/<pid>/stat.
func procStat(pid int) (stat, bool) {
	if pid <= 0 {
		return stat{}, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, false
	}
	// After the command: state, ppid, ... utime (14th field of the whole
	// line), stime, cutime, cstime.
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return stat{}, false
	}
	n := make([]int64, 4)
	for i := range n {
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return stat{}, false
		}
		n[i] = v
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return stat{}, false
	}
	return stat{comm: s[open+1 : end], ppid: ppid,
		self:     time.Duration(n[0]+n[1]) * clockTick,
		children: time.Duration(n[2]+n[3]) * clockTick}, true
}
