// Package testenv decides what a test does when a component it needs (a
// PostgreSQL server, an S3 or Azure endpoint, the real server binary) is
// missing: on a developer's machine it skips, but in the CI stage that
// provides the component a skip would hide a test that never ran, so there
// it fails. Each stage script exports STOWAGE_REQUIRE_<COMPONENT>=1 for the
// components it starts (scripts/*.sh; docs/testing.md lists them):
//
//	STOWAGE_REQUIRE_POSTGRES   scripts/postgres-test.sh   meta/postgres, cmd/stowage TestMigrate*, e2e multi-node
//	STOWAGE_REQUIRE_S3         scripts/s3-test.sh         storage/s3
//	STOWAGE_REQUIRE_VERSITYGW  scripts/s3-test.sh         e2e TestMirrorOfTwoS3Servers
//	STOWAGE_REQUIRE_AZURE      scripts/azure-test.sh      storage/azure
//	STOWAGE_REQUIRE_E2E        scripts/test.sh (unit), postgres-test.sh, s3-test.sh   e2e (not -short)
//	STOWAGE_REQUIRE_DOCKER_REGISTRY, _CRANE   scripts/remote-test.sh   e2e TestImportFrom*, TestPullThrough*
package testenv

import (
	"os"
	"strings"
	"testing"
)

// Required reports whether the running CI stage provides component ("postgres",
// "s3", "versitygw", "azure", "e2e"): STOWAGE_REQUIRE_<COMPONENT> is set and
// not "0".
func Required(component string) bool {
	v := os.Getenv("STOWAGE_REQUIRE_" + strings.ToUpper(component))
	return v != "" && v != "0"
}

// Skip skips t because component is missing (why says what to do), or fails
// it if the stage requires component.
func Skip(t testing.TB, component, why string) {
	t.Helper()
	if Required(component) {
		t.Fatalf("%s (STOWAGE_REQUIRE_%s is set: this stage provides %s, so the test must run, not skip)",
			why, strings.ToUpper(component), component)
	}
	t.Skip(why)
}
