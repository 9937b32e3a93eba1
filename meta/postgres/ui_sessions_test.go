package postgres_test

import (
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

func TestUISessions(t *testing.T) {
	pgtest.Server(t)
	metatest.RunUISessions(t, func(t *testing.T) stowage.DB { return open(t, pgtest.Schema(t, "stowage_test")) })
}
