// Command chatmq-ferretdb serves the MongoDB wire protocol for chatmq's local and CI
// runs: FerretDB 1.24 embedded as a library, so that no MongoDB server (not packaged by
// Debian) is needed. Two backends, chosen with -handler:
//
//   - sqlite (the default): databases in -sqlite-dir; nothing else to run.
//   - postgresql: a PostgreSQL database given by -postgresql-url (for example
//     postgres://postgres@127.0.0.1:5433/ferretdb), which must exist and accept the
//     connection; FerretDB pushes more query filters down to PostgreSQL than to SQLite.
//
// Each flag's default comes from an environment variable when it is set:
// CHATMQ_FERRETDB_BACKEND (-handler) and CHATMQ_FERRETDB_POSTGRESQL_URL (-postgresql-url).
//
// Built and started by scripts/services.sh (`up mongo`); it runs until SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}

	return def
}

func main() {
	addr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	handler := flag.String("handler", envOr("CHATMQ_FERRETDB_BACKEND", "sqlite"), "backend: sqlite or postgresql")
	dir := flag.String("sqlite-dir", "", "directory of the SQLite databases (created if missing; required for sqlite)")
	pgURL := flag.String("postgresql-url", os.Getenv("CHATMQ_FERRETDB_POSTGRESQL_URL"),
		"PostgreSQL connection URL (required for postgresql), e.g. postgres://postgres@127.0.0.1:5433/ferretdb")
	level := flag.String("log-level", "info", "log level: debug, info, warn or error")
	flag.Parse()

	if err := run(*addr, *handler, *dir, *pgURL, *level); err != nil {
		fmt.Fprintln(os.Stderr, "chatmq-ferretdb:", err)
		os.Exit(1)
	}
}

// backendConfig fills the handler's part of cfg and returns what to log about it
// (never a password: the URL is logged with its user information redacted).
func backendConfig(cfg *ferretdb.Config, handler, dir, pgURL string) ([]any, error) {
	switch handler {
	case "sqlite":
		if dir == "" {
			return nil, fmt.Errorf("-sqlite-dir is required with -handler sqlite")
		}

		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}

		// FerretDB's SQLite handler needs an existing directory, given as a URI ending in "/".
		if err = os.MkdirAll(abs, 0o755); err != nil {
			return nil, err
		}

		cfg.SQLiteURL = "file:" + abs + "/"

		return []any{"sqlite-dir", abs}, nil

	case "postgresql":
		if pgURL == "" {
			return nil, fmt.Errorf("-postgresql-url is required with -handler postgresql")
		}

		u, err := url.Parse(pgURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, fmt.Errorf("-postgresql-url must be a postgres:// URL")
		}

		cfg.PostgreSQLURL = pgURL

		return []any{"postgresql-url", u.Redacted()}, nil

	default:
		return nil, fmt.Errorf("bad -handler %q: sqlite or postgresql", handler)
	}
}

func run(addr, handler, dir, pgURL, level string) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("bad -log-level %q: %w", level, err)
	}

	cfg := ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: addr}, Handler: handler}

	where, err := backendConfig(&cfg, handler, dir, pgURL)
	if err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	cfg.Logger = logger

	f, err := ferretdb.New(&cfg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("chatmq-ferretdb starting", append([]any{"addr", addr, "handler", handler}, where...)...)

	if err = f.Run(ctx); err != nil {
		return err
	}

	logger.Info("chatmq-ferretdb stopped")

	return nil
}
