package webui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/threadmill/threadmill/internal/runctl"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// sessionCookie holds a logged-in browser's session: a random id and its
// signature with the Server's key. The CSRF token of its forms is another
// signature of the same id.
const sessionCookie = "threadmill_ui_session"

// sign returns the hex HMAC-SHA256 of purpose and id under the server's key.
func (s *Server) sign(purpose, id string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose + "\x00" + id))
	return hex.EncodeToString(m.Sum(nil))
}

// session returns the id of the request's valid session, "" when none (or
// when actions are off).
func (s *Server) session(r *http.Request) string {
	if !s.ActionsEnabled() {
		return ""
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	id, sig, ok := strings.Cut(c.Value, ".")
	if !ok || id == "" || !hmac.Equal([]byte(sig), []byte(s.sign("session", id))) {
		return ""
	}
	return id
}

// page fills in what every page shows for r.
func (s *Server) page(r *http.Request, title, nav string) page {
	p := page{Title: title, Nav: nav, Actions: s.ActionsEnabled(), Here: s.opts.Prefix + r.URL.Path}
	if r.URL.RawQuery != "" {
		p.Here += "?" + r.URL.RawQuery
	}
	if id := s.session(r); id != "" {
		p.LoggedIn, p.CSRF = true, s.sign("csrf", id)
	}
	return p
}

// authorize checks that actions are on, the request has a session and the
// form carries its CSRF token; otherwise it answers and returns false.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if !s.ActionsEnabled() {
		s.fail(w, r, http.StatusForbidden, "Actions are off: start the UI with "+TokenEnv+" set to enable them.")
		return false
	}
	id := s.session(r)
	if id == "" {
		s.fail(w, r, http.StatusForbidden, "Log in with the action token first.")
		return false
	}
	if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(s.sign("csrf", id))) {
		s.fail(w, r, http.StatusForbidden, "Refused: the form's CSRF token is missing or wrong (reload the page and try again).")
		return false
	}
	return true
}

// localPath returns next when it is a path of this UI, else the runs page.
func (s *Server) localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") ||
		!strings.HasPrefix(u.Path, s.opts.Prefix+"/") {
		return s.opts.Prefix + "/"
	}
	return next
}

// withNotice adds ?notice=code to a local path.
func withNotice(p, code string) string {
	u, _ := url.Parse(p)
	q := u.Query()
	q.Set("notice", code)
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.ActionsEnabled() {
		s.fail(w, r, http.StatusForbidden, "Actions are off: start the UI with "+TokenEnv+" set to enable them.")
		return
	}
	if !s.logins.Allow() {
		w.Header().Set("Retry-After", "2")
		s.fail(w, r, http.StatusTooManyRequests, "Too many login attempts: wait a few seconds and try again.")
		return
	}
	token := r.PostFormValue("token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) != 1 {
		s.opts.Logger.Warn("webui: login refused: wrong token", "remote", r.RemoteAddr)
		s.fail(w, r, http.StatusForbidden, "Wrong action token.")
		return
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		s.fail(w, r, http.StatusInternalServerError, "No session: "+err.Error())
		return
	}
	id := hex.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id + "." + s.sign("session", id), Path: s.opts.Prefix + "/",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.opts.Logger.Info("webui: logged in", "remote", r.RemoteAddr)
	http.Redirect(w, r, withNotice(s.localPath(r.PostFormValue("next")), "logged-in"), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: s.opts.Prefix + "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, withNotice(s.opts.Prefix+"/", "logged-out"), http.StatusSeeOther)
}

// actionRun checks an action's request and returns the run's page path.
func (s *Server) actionRun(w http.ResponseWriter, r *http.Request) (pipeline, id, back string, ok bool) {
	if !s.authorize(w, r) {
		return "", "", "", false
	}
	pipeline, id = r.PathValue("pipeline"), r.PathValue("run")
	for _, seg := range []string{pipeline, id} {
		if err := checkSegment(seg); err != nil {
			s.fail(w, r, http.StatusBadRequest, "Bad run address: "+err.Error()+".")
			return "", "", "", false
		}
	}
	if s.opts.Store == nil {
		s.fail(w, r, http.StatusConflict, "Actions need the run state in Redis: start the UI with --redis.")
		return "", "", "", false
	}
	st, err := s.opts.Store.Run(r.Context(), id)
	if err != nil || st.Pipeline != pipeline {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("No run %s of pipeline %s in Redis (runs of the embedded run live in their own process).", id, pipeline))
		return "", "", "", false
	}
	return pipeline, id, s.opts.Prefix + "/runs/" + url.PathEscape(pipeline) + "/" + url.PathEscape(id), true
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	_, id, back, ok := s.actionRun(w, r)
	if !ok {
		return
	}
	c, err := runctl.Cancel(r.Context(), s.opts.Store.Client(), s.opts.Queue, id, "canceled from the web UI")
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, "The run could not be canceled: "+err.Error())
		return
	}
	if c.MoveErr != nil {
		s.opts.Logger.Warn("webui: the run's waiting tasks were not taken at once", "run", id, "err", c.MoveErr)
	}
	notice := "canceled"
	if runstore.Terminal(c.Before) {
		notice = "finished"
	}
	s.opts.Logger.Info("webui: run canceled", "run", id, "was", c.Before, "remote", r.RemoteAddr)
	http.Redirect(w, r, withNotice(back, notice), http.StatusSeeOther)
}

func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	_, id, back, ok := s.actionRun(w, r)
	if !ok {
		return
	}
	states := []string{results.StateFailed, results.StateSkipped, results.StateCanceled}
	re, err := runctl.Retry(r.Context(), s.opts.Store.Client(), s.opts.Queue, id, states)
	switch {
	case errors.Is(err, runstore.ErrNotReopenable):
		s.fail(w, r, http.StatusConflict, "The run cannot be retried: "+err.Error())
		return
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, "The run could not be retried: "+err.Error())
		return
	case re.Attempt == 0:
		http.Redirect(w, r, withNotice(back, "nothing"), http.StatusSeeOther)
		return
	}
	s.opts.Logger.Info("webui: run retried", "run", id, "attempt", re.Attempt, "items", re.Total(), "remote", r.RemoteAddr)
	http.Redirect(w, r, withNotice(back, "retried"), http.StatusSeeOther)
}
