package config

import (
	"strings"
	"testing"
)

func TestReplicationValidate(t *testing.T) {
	peer := func(name, url string) Peer { return Peer{Name: name, URL: url} }
	cases := []struct {
		name string
		r    Replication
		want string // "" = valid
	}{
		{"off", Replication{}, ""},
		{"mesh", Replication{Region: "east", Peers: []Peer{peer("west", "https://west:5000"), peer("north", "http://n:5000")}}, ""},
		{"peers without region", Replication{Peers: []Peer{peer("west", "https://west:5000")}}, "replication.region is not"},
		{"bad region", Replication{Region: "East Coast"}, "replication.region"},
		{"own name", Replication{Region: "east", Peers: []Peer{peer("east", "https://e:5000")}}, "this region's own name"},
		{"twice", Replication{Region: "east", Peers: []Peer{peer("west", "https://w:5000"), peer("west", "https://w2:5000")}}, "listed twice"},
		{"bad url", Replication{Region: "east", Peers: []Peer{peer("west", "west:5000")}}, "url"},
		{"password in no env", Replication{Region: "east", Peers: []Peer{{Name: "west", URL: "https://w:5000", Username: "repl"}}}, "password_env"},
		{"negative concurrency", Replication{Region: "east", Concurrency: -1}, "concurrency"},
		{"negative timeout", Replication{Region: "east", Timeouts: PeerTimeouts{Idle: -1}}, "replication.timeouts"},
	}
	for _, c := range cases {
		errs := strings.Join(c.r.validate(), "\n")
		if c.want == "" && errs != "" || c.want != "" && !strings.Contains(errs, c.want) {
			t.Errorf("%s: %q, want %q", c.name, errs, c.want)
		}
	}
	if !(Replication{}).ReadThroughOn() {
		t.Errorf("read-through is off by default")
	}
	off := false
	if (Replication{ReadThrough: &off}).ReadThroughOn() {
		t.Errorf("read_through: false left it on")
	}
}
