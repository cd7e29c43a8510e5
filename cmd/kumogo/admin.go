package main

import (
	"errors"
	"path/filepath"

	"github.com/kumogo/kumogo/internal/adminapi"
)

// adminStateFile is the file, beside the meta spool's directory, that
// keeps the admin bounces and suspensions across restarts (for a meta
// spool at /var/spool/kumomta/meta: /var/spool/kumomta/kumogo-admin.json).
const adminStateFile = "kumogo-admin.json"

// adminStatePath is where this daemon keeps its admin rules.
func (d *daemon) adminStatePath() string {
	meta := d.spools["meta"]
	if meta == nil || meta.Path == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(filepath.Clean(meta.Path)), adminStateFile)
}

// QueueAdmin serves kumo.api.admin.* (runtime.QueueAdmin).
func (d *daemon) QueueAdmin() (adminapi.Service, error) {
	if d.queue == nil {
		return nil, errors.New("waiting for spool startup")
	}
	return d.queue, nil
}

// BumpConfigEpoch serves POST /api/admin/bump-config-epoch.
func (d *daemon) BumpConfigEpoch() {
	d.log.Info().Msg("config epoch bumped by the admin API")
	d.rt.BumpEpoch()
}
