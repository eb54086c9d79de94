package postgres

import (
	"encoding/json"

	"github.com/google/uuid"

	"github.com/onboard/onboard/eventstore"
)

func newTestEvent() eventstore.NewEvent {
	return eventstore.NewEvent{
		ID:            uuid.Must(uuid.NewV7()),
		Type:          "test.happened",
		SchemaVersion: 1,
		Data:          json.RawMessage(`{"email":"someone@example.com","company":"Acme","plan":"growth"}`),
		Metadata:      eventstore.Metadata{Actor: "test", CorrelationID: "corr", RequestID: "req"},
	}
}
