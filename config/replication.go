package config

import (
	"fmt"
	"net/url"
	"regexp"
)

// Replication joins this deployment to others as one geo-replicated
// registry (docs/replication.md). Empty Region: replication is off.
type Replication struct {
	// Region names this deployment among the regions (unique, stable:
	// the clocks of every change carry it).
	Region string `yaml:"region"`
	// ReadThrough fetches from the peers, on a miss, a manifest or blob
	// this region does not have yet (default on when peers are set).
	ReadThrough *bool `yaml:"read_through"`
	// Concurrency bounds the blob uploads of one manifest to a peer
	// (default 4).
	Concurrency int `yaml:"concurrency"`
	// Bandwidth bounds the bytes per second of blob uploads to each peer
	// (e.g. 50MiB; 0, the default: no bound).
	Bandwidth ByteSize `yaml:"bandwidth"`
	// Timeouts bound every request to a peer (zero: the defaults).
	Timeouts PeerTimeouts `yaml:"timeouts"`
	// Peers are every other region (a full mesh).
	Peers []Peer `yaml:"peers"`
}

// PeerTimeouts bound the requests to the peers: connect (TCP and TLS,
// default 5s), response (to the response headers, 30s), idle (no byte
// moving in a body or a wait, 30s: a large blob streams as long as bytes
// come) and down_for (read-through skips a peer that did not answer for
// this long, 10s).
type PeerTimeouts struct {
	Connect  Duration `yaml:"connect"`
	Response Duration `yaml:"response"`
	Idle     Duration `yaml:"idle"`
	DownFor  Duration `yaml:"down_for"`
}

// Peer is another region.
type Peer struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Username and the environment variable holding its password: an
	// admin user of the peer (the password is never in the file).
	Username    string `yaml:"username"`
	PasswordEnv string `yaml:"password_env"`
	// CACert is a PEM file of a CA to trust for the peer's TLS certificate.
	CACert string `yaml:"ca_cert"`
}

// ReadThroughOn reports whether read-through is on.
func (r Replication) ReadThroughOn() bool { return r.ReadThrough == nil || *r.ReadThrough }

var regionName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (r Replication) validate() []string {
	var errs []string
	if r.Region == "" {
		if len(r.Peers) > 0 {
			errs = append(errs, "replication.peers is set but replication.region is not: name this region (e.g. region: east)")
		}
		return errs
	}
	if !regionName.MatchString(r.Region) {
		errs = append(errs, fmt.Sprintf("replication.region %q: use lowercase letters, digits and '-' (e.g. east, eu-west-1)", r.Region))
	}
	if r.Bandwidth < 0 {
		errs = append(errs, "replication.bandwidth must not be negative (0: no bound)")
	}
	if r.Concurrency < 0 {
		errs = append(errs, "replication.concurrency must not be negative (0: the default, 4)")
	}
	if t := r.Timeouts; t.Connect < 0 || t.Response < 0 || t.Idle < 0 || t.DownFor < 0 {
		errs = append(errs, "replication.timeouts must not be negative (0: the default)")
	}
	seen := map[string]bool{r.Region: true}
	for i, p := range r.Peers {
		at := fmt.Sprintf("replication.peers[%d]", i)
		switch {
		case !regionName.MatchString(p.Name):
			errs = append(errs, fmt.Sprintf("%s.name %q: use lowercase letters, digits and '-' (the peer's own replication.region)", at, p.Name))
		case seen[p.Name]:
			errs = append(errs, fmt.Sprintf("%s.name %q is listed twice or is this region's own name", at, p.Name))
		}
		seen[p.Name] = true
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("%s.url %q: want http(s)://host:port of the peer", at, p.URL))
		}
		if p.Username != "" && p.PasswordEnv == "" {
			errs = append(errs, fmt.Sprintf("%s: username %q needs password_env, the environment variable that holds its password", at, p.Username))
		}
	}
	return errs
}
