// Package auth is Stowage's access control: users, scope maps and
// repository-scoped tokens (as in Azure Container Registry), the Docker
// token flow, and the middleware that enforces them on the OCI API (/v2/)
// and the management APIs (/api/v1/, /acr/v1/).
//
// # State
//
// Users, scope maps, tokens and the anonymous-pull switch are one JSON
// document in the settings table (SettingState, "auth.state"), changed
// read-modify-write in one transaction per change, so concurrent changes
// never lose each other. Each Authority caches it: its own changes take
// effect at once, other nodes' after Options.RefreshInterval. The HS256
// signing key is generated at first start and kept under SettingKey
// ("auth.signing-key"), so every node sharing the database verifies every
// node's tokens; sealed with Options.Keys (the encryption keyring), so the
// database alone does not give it away (signkey.go).
//
// # Tokens
//
// The token endpoint (TokenHandler, at TokenPath) issues JWTs signed with
// HS256. Their claims:
//
//	{
//	  "iss": "stowage",                 Options.Issuer
//	  "sub": "ci",                      user or token name; "" for anonymous callers
//	  "aud": "registry.example:5000",   the service (Options.Service, else the registry's host)
//	  "exp": 1893499500, "nbf": …, "iat": …, "jti": "…",
//	  "access": [                       what was asked, as far as the caller may have it
//	    {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]},
//	    {"type": "registry", "name": "catalog", "actions": ["*"]}
//	  ],
//	  "stowage_kind": "token",          "user", "token" or "anonymous"
//	  "stowage_cred": "9f1c…",          stamp of the password used: a new password revokes the token
//	  "stowage_use": "access"           "access" (bearer) or "refresh" (token endpoint only)
//	}
//
// Actions in claims and scopes: Docker's pull (content/read and
// metadata/read), push (content/write and content/read), delete
// (content/delete), "*" (all); ACR's metadata_read and metadata_write; and
// the scope map actions themselves (content/read, …). Resources:
// repository:<name>, registry:catalog:* (listing, for any authenticated
// caller), registry:metrics:read (/metrics, for callers whose scope map
// has metrics/read in a rule for *) and registry:*:* (registry-wide and
// admin operations, for admins). A bearer request may do what its claims grant and what its
// identity holds now: both, never more.
package auth
