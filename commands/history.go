package commands

import (
	"container/list"
	"sync"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
)

// histories remembers the decoded events of recently used customers, so
// that the next load reads only what came after them, up to max of them
// and none in a terminal state: no command moves those any more, and the
// few that still record something on one (support told of a rejection)
// read its stream. Config.TrustHistories says why deciding on them is
// safe.
type histories struct {
	mu    sync.Mutex
	max   int
	items map[uuid.UUID]*list.Element
	lru   *list.List // front: most recently used
	// waiters are closed when the history of their customer is put.
	waiters map[uuid.UUID][]chan struct{}
}

type history struct {
	id     uuid.UUID
	events []domain.Event
	lastID uuid.UUID // the event id of the last one, to check a reread
	// trace is the trace context the last event was recorded with.
	trace map[string]string
	// state is the customer as events say, when known: never handed out
	// (it is shared), only cloned, which is cheaper than applying events.
	state *domain.Customer
}

func newHistories(max int) *histories {
	return &histories{max: max, items: map[uuid.UUID]*list.Element{}, lru: list.New(), waiters: map[uuid.UUID][]chan struct{}{}}
}

// watch returns a channel that is closed when a history of id is next put.
// The caller unwatches it when it stops waiting before that.
func (hs *histories) watch(id uuid.UUID) chan struct{} {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	ch := make(chan struct{})
	hs.waiters[id] = append(hs.waiters[id], ch)
	return ch
}

func (hs *histories) unwatch(id uuid.UUID, ch chan struct{}) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	ws := hs.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(hs.waiters, id)
	} else {
		hs.waiters[id] = ws
	}
}

// get returns the remembered history of id; the caller may append to the
// returned slice without disturbing the remembered one.
func (hs *histories) get(id uuid.UUID) (history, bool) {
	if hs == nil {
		return history{}, false
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	el, ok := hs.items[id]
	if !ok {
		return history{}, false
	}
	hs.lru.MoveToFront(el)
	h := el.Value.(history)
	h.events = h.events[:len(h.events):len(h.events)]
	return h, true
}

// put remembers h unless a longer history of the customer is remembered;
// a history that ends in a terminal state is forgotten instead. Either way
// it wakes the customer's watchers.
func (hs *histories) put(h history) {
	if hs == nil || len(h.events) == 0 {
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, w := range hs.waiters[h.id] {
		close(w)
	}
	delete(hs.waiters, h.id)
	if h.state != nil && h.state.State().Terminal() {
		hs.forgetLocked(h.id)
		return
	}
	if el, ok := hs.items[h.id]; ok {
		if len(el.Value.(history).events) <= len(h.events) {
			el.Value = h
		}
		hs.lru.MoveToFront(el)
		return
	}
	hs.items[h.id] = hs.lru.PushFront(h)
	for hs.lru.Len() > hs.max {
		last := hs.lru.Back()
		delete(hs.items, last.Value.(history).id)
		hs.lru.Remove(last)
	}
}

// forget drops the remembered history of id.
func (hs *histories) forget(id uuid.UUID) {
	if hs == nil {
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.forgetLocked(id)
}

func (hs *histories) forgetLocked(id uuid.UUID) {
	if el, ok := hs.items[id]; ok {
		delete(hs.items, id)
		hs.lru.Remove(el)
	}
}
