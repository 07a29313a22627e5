package server

import "errors"

// ErrNoKeyFile is returned by ReloadKeys when the node verifies tokens
// without a key file (--auth=none or --jwt-secret): there is nothing to
// re-read.
var ErrNoKeyFile = errors.New("no --jwt-public-key or --jwks-file to reload")

// ReloadKeys re-reads --jwt-public-key or --jwks-file and makes the keys
// current for every handshake that follows; connections already open keep
// their identity. It logs "keys reloaded" with the key count, or "key
// reload failed" with the reason, in which case the keys in use stay as
// they were. Key material is never logged. The switchboard command calls it
// on SIGHUP.
func (s *Server) ReloadKeys() error {
	if s.keys == nil {
		s.log.Warn("key reload requested, but there is no key file", "auth", s.cfg.Auth)
		return ErrNoKeyFile
	}
	n, err := s.keys.Reload()
	if err != nil {
		s.log.Error("key reload failed; keeping the current keys", "error", err.Error())
		return err
	}
	s.log.Info("keys reloaded", "keys", n, "source", s.keys.source)
	return nil
}
