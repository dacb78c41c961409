package scheduler

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/scheduler/placement"
)

// FuzzReadJob feeds arbitrary bodies to the job decoder at the edge: it
// must never panic, must refuse with a 400, and whatever it accepts must
// be a valid, canonical job.
func FuzzReadJob(f *testing.F) {
	f.Add(`{"job":{"name":"web","groups":[{"name":"g","count":3,"tasks":[{"name":"t","image":"nginx:1.27","resources":{"cpu":500,"memory":256}}]}]}}`)
	f.Add(`{"job":{"name":"b","type":"batch","groups":[{"name":"g","tasks":[{"name":"t","image":"busybox","resources":{"gpus":{"count":1,"model":"H100"}}}]}]}}`)
	f.Add(`{"job":{"name":"c","constraints":[{"attribute":"${node.label.rack}","operator":"regexp","value":"r[12]"}],"groups":[{"name":"g","tasks":[{"name":"t","image":"x","ports":[{"to":80,"static":8080}]}]}]}}`)
	f.Add(`{"job":{"name":"x","colour":"red"}}`)
	f.Add(`{"job":null}`)
	f.Add(`{"job":{"name":"","groups":[{"count":-1}]}}`)
	f.Add(`[]`)
	f.Add(``)
	e := echo.New()
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/jobs", strings.NewReader(body))
		c := e.NewContext(req, httptest.NewRecorder())
		job, err := readJob(c)
		if err != nil {
			var he *echo.HTTPError
			if !errors.As(err, &he) || he.Code != http.StatusBadRequest {
				t.Fatalf("refusal is not a 400: %v", err)
			}
			return
		}
		if job == nil {
			t.Fatal("no job and no error")
		}
		if err := placement.ValidateJob(job); err != nil {
			t.Fatalf("accepted job does not validate: %v", err)
		}
		if job.ID != job.Name || job.Stop || job.Version != 0 || job.CreateIndex != 0 {
			t.Fatalf("accepted job keeps client-set server fields: %+v", job)
		}
	})
}
