// Command chatmq-ferretdb serves the MongoDB wire protocol for chatmq's local and CI
// runs: FerretDB 1.24 embedded as a library, with its SQLite backend, so that no
// MongoDB server (not packaged by Debian) and no PostgreSQL are needed.
//
// Built and started by scripts/services.sh (`up mongo`); it runs until SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("sqlite-dir", "", "directory of the SQLite databases (created if missing; required)")
	level := flag.String("log-level", "info", "log level: debug, info, warn or error")
	flag.Parse()

	if err := run(*addr, *dir, *level); err != nil {
		fmt.Fprintln(os.Stderr, "chatmq-ferretdb:", err)
		os.Exit(1)
	}
}

func run(addr, dir, level string) error {
	if dir == "" {
		return fmt.Errorf("-sqlite-dir is required")
	}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("bad -log-level %q: %w", level, err)
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}

	// FerretDB's SQLite handler needs an existing directory, given as a URI ending in "/".
	if err = os.MkdirAll(abs, 0o755); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("chatmq-ferretdb starting", "addr", addr, "sqlite-dir", abs, "uri", f.MongoDBURI())

	if err = f.Run(ctx); err != nil {
		return err
	}

	logger.Info("chatmq-ferretdb stopped")

	return nil
}
