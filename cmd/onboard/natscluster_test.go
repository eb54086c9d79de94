package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/onboard/onboard/internal/pgtest"
	"github.com/onboard/onboard/messaging"
)

// startNATSCluster starts three embedded NATS servers as one cluster with
// clustered JetStream, and returns them once JetStream answers.
func startNATSCluster(t *testing.T) []*messaging.Server {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range 6 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	var routes []string
	for _, p := range ports[3:] {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	nodes := make([]*messaging.Server, 3)
	for i := range nodes {
		var passwords map[string]string // the nodes share the first one's
		if i > 0 {
			passwords = nodes[0].Passwords()
		}
		s, err := messaging.StartEmbedded(messaging.EmbeddedConfig{DataDir: t.TempDir(), Port: ports[i],
			ServerName: fmt.Sprintf("node-%d", i+1), StartTimeout: 30 * time.Second, Passwords: passwords,
			Cluster: messaging.ClusterConfig{Name: "onboard-test", Port: ports[3+i], Routes: routes}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		nodes[i] = s
	}
	js := clusterJS(t, nodes)
	waitFor(t, time.Minute, "clustered JetStream to answer", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil, fmt.Sprint(err)
	})
	return nodes
}

// clusterURLs is the client URL list of nodes, as NATS_URL takes it.
func clusterURLs(nodes []*messaging.Server) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.ClientURL())
	}
	return strings.Join(urls, ",")
}

func clusterJS(t *testing.T, nodes []*messaging.Server) jetstream.JetStream {
	t.Helper()
	admin, err := nodes[0].Credentials(string(messaging.RoleAdmin)).Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := messaging.Connect(clusterURLs(nodes), t.Name(), admin...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestNATSClusterNodeLoss runs the pipeline on a three-node NATS cluster
// with R3 streams, two workers (each its own NATS connection and pool) and
// the relay, and kills the events stream's leader under load. Nothing is
// lost (every customer ends active, and the stream holds every event of
// the store), no effect happens twice, no customer waits more than 10 s
// between two of its events, and the node, started again, catches up.
func TestNATSClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster under load")
	}
	ctx := context.Background()
	dbURL := pgtest.NewMigratedDatabase(t)
	nodes := startNATSCluster(t)
	js := clusterJS(t, nodes)
	p := startFaultPipeline(t, dbURL, clusterURLs(nodes), nodes[0], 3, 2)

	// One customer through first: the streams and consumers exist, and
	// the waits measured below are the fault's, not the start's.
	p.waitTerminal(p.signUp("warmup", 1, 0), time.Minute)
	signedUp := make(chan []uuid.UUID, 1)
	go func() { signedUp <- p.signUp("cluster", 120, 50*time.Millisecond) }()
	waitFor(t, time.Minute, "events on the stream", func() (bool, string) {
		s, err := js.Stream(ctx, messaging.DefaultStreamName)
		return err == nil && s.CachedInfo().State.Msgs >= 100, fmt.Sprint(err)
	})
	leader := streamLeader(t, js)
	var victim *messaging.Server
	for _, n := range nodes {
		if n.Name() == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("the stream's leader %q is none of the nodes", leader)
	}
	victim.Shutdown()
	t.Logf("killed %s, the events stream's leader, under load", leader)
	time.Sleep(5 * time.Second) // the node stays down while signups go on
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s started again; the stream's leader now %s", leader, streamLeader(t, js))
	ids := <-signedUp
	p.waitTerminal(ids, 3*time.Minute)
	p.checkEffects(ids)

	streams := make([]string, len(ids))
	for i, id := range ids {
		streams[i] = "customer-" + id.String()
	}
	var seconds float64
	var gapStream string
	if err := p.store.Pool().QueryRow(ctx, `SELECT coalesce(max(g), 0)::float8, coalesce((array_agg(stream_id ORDER BY g DESC NULLS LAST))[1], '')
		FROM (SELECT stream_id, extract(epoch FROM recorded_at - lag(recorded_at) OVER (PARTITION BY stream_id ORDER BY version)) AS g
			FROM events WHERE stream_id = ANY($1)) s`, streams).Scan(&seconds, &gapStream); err != nil {
		t.Fatal(err)
	}
	gap := time.Duration(seconds * float64(time.Second))
	id, _ := uuid.Parse(strings.TrimPrefix(gapStream, "customer-"))
	t.Logf("longest wait between two events of one customer: %v (%s), whose history is\n%s", gap.Round(time.Millisecond), gapStream, historyOf(t, p.store, id))
	if gap > 10*time.Second {
		t.Errorf("customer %s stalled %v, want at most 10s", gapStream, gap)
	}

	waitFor(t, 2*time.Minute, "every replica of the stream current", func() (bool, string) {
		s, err := js.Stream(ctx, messaging.DefaultStreamName)
		if err != nil {
			return false, err.Error()
		}
		c := s.CachedInfo().Cluster
		if c == nil || len(c.Replicas) != 2 {
			return false, fmt.Sprintf("cluster %+v", c)
		}
		for _, r := range c.Replicas {
			if !r.Current || r.Offline || r.Lag != 0 {
				return false, fmt.Sprintf("replica %s: current %v, offline %v, lag %d", r.Name, r.Current, r.Offline, r.Lag)
			}
		}
		return true, ""
	})
	assertStreamHoldsStore(t, p, nodes)
}

// streamLeader names the server leading the events stream.
func streamLeader(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	var leader string
	waitFor(t, time.Minute, "the events stream to have a leader", func() (bool, string) {
		s, err := js.Stream(context.Background(), messaging.DefaultStreamName)
		if err != nil {
			return false, err.Error()
		}
		if c := s.CachedInfo().Cluster; c != nil {
			leader = c.Leader
		}
		return leader != "", "no leader"
	})
	return leader
}

// assertStreamHoldsStore checks, on every node, that the events stream
// holds each event of the store exactly once.
func assertStreamHoldsStore(t *testing.T, p *faultPipeline, nodes []*messaging.Server) {
	t.Helper()
	ctx := context.Background()
	want := map[string]bool{}
	rows, err := p.store.Pool().Query(ctx, `SELECT event_id::text FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	rows.Close()
	// The customers' last events may still be on their way to the stream.
	js := clusterJS(t, nodes)
	waitFor(t, time.Minute, "the relay to publish every event", func() (bool, string) {
		s, err := js.Stream(ctx, messaging.DefaultStreamName)
		if err != nil {
			return false, err.Error()
		}
		return s.CachedInfo().State.Msgs >= uint64(len(want)), fmt.Sprintf("%d messages", s.CachedInfo().State.Msgs)
	})
	for _, n := range nodes {
		// Direct gets through each node: its own replica answers them
		// when it can (a queue group prefers local subscribers).
		nc, err := n.Connect(t.Name())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, messaging.DefaultStreamName)
		if err != nil {
			t.Fatal(err)
		}
		st := s.CachedInfo().State
		seen := map[string]int{}
		for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
			if m, err := s.GetMsg(ctx, seq); err == nil {
				seen[m.Header.Get(messaging.HeaderMsgID)]++
			}
		}
		nc.Close()
		missing, twice := 0, 0
		for id := range want {
			switch seen[id] {
			case 0:
				missing++
			case 1:
			default:
				twice++
			}
		}
		t.Logf("%s: the stream holds %d messages; of the store's %d events %d missing, %d more than once",
			n.Name(), st.Msgs, len(want), missing, twice)
		if missing != 0 || twice != 0 {
			t.Errorf("%s: %d events missing from the stream, %d more than once", n.Name(), missing, twice)
		}
	}
}
