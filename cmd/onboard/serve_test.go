package main

import (
	"strings"
	"testing"
	"time"
)

func TestServeConfigInboxRetention(t *testing.T) {
	t.Setenv("ONBOARD_INBOX_RETENTION", "72h")
	cfg, err := loadServeConfig("127.0.0.1:0", "projector")
	if err != nil || cfg.inboxRetention != 72*time.Hour {
		t.Fatalf("72h: retention %v, err %v", cfg.inboxRetention, err)
	}
	for _, bad := range []string{"soon", "10m", "-5h"} {
		t.Setenv("ONBOARD_INBOX_RETENTION", bad)
		if _, err := loadServeConfig("127.0.0.1:0", "projector"); err == nil || !strings.Contains(err.Error(), "ONBOARD_INBOX_RETENTION") {
			t.Errorf("%q: err %v, want one naming ONBOARD_INBOX_RETENTION", bad, err)
		}
	}
}
