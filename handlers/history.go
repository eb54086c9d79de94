package handlers

import (
	"container/list"
	"sync"

	"github.com/google/uuid"

	"github.com/onboard/onboard/domain"
)

// histories remembers the decoded events of recently used customers, so
// that the next load reads only what came after them. Events are immutable
// and versioned, so a remembered history is always a prefix of the stream:
// it can be short of the truth (another process appended since), never
// wrong, and the append's expected version catches the shortfall.
type histories struct {
	mu    sync.Mutex
	max   int
	items map[uuid.UUID]*list.Element
	lru   *list.List // front: most recently used
}

type history struct {
	id     uuid.UUID
	events []domain.Event
	lastID uuid.UUID // the event id of the last one, to check a reread
	// trace is the trace context the last event was recorded with.
	trace map[string]string
}

func newHistories(max int) *histories {
	return &histories{max: max, items: map[uuid.UUID]*list.Element{}, lru: list.New()}
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

// put remembers h unless a longer history of the customer is remembered.
func (hs *histories) put(h history) {
	if hs == nil || len(h.events) == 0 {
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
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
	if el, ok := hs.items[id]; ok {
		delete(hs.items, id)
		hs.lru.Remove(el)
	}
}
