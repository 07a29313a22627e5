package server

import (
	"fmt"
	"log/slog"

	"github.com/lesismal/nbio/logging"
)

// nbioLogger sends nbio's own messages through the server's slog logger,
// one level down: its start-up chatter is debug detail here, and its
// errors are warnings about single sockets.
type nbioLogger struct{ log *slog.Logger }

func (l nbioLogger) SetLevel(int) {}
func (l nbioLogger) Debug(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "nbio")
}
func (l nbioLogger) Info(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "component", "nbio")
}
func (l nbioLogger) Warn(format string, v ...any) {
	l.log.Info(fmt.Sprintf(format, v...), "component", "nbio")
}
func (l nbioLogger) Error(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...), "component", "nbio")
}

func routeNBIOLogs(log *slog.Logger) { logging.SetLogger(nbioLogger{log: log}) }
