// Package console is the operator's web UI at / of the web role: per-domain
// record counts by state, the repeaters in backoff, the invariants, a
// delivery-rate chart of the last hour and each domain's process_repeaters
// flag with a switch.
//
// It is server-rendered with html/template (everything from users and
// endpoints is escaped) from the templates in assets/templates, and its one
// script and style sheet are files in assets/static, embedded in the binary
// and served from /ui/static/ (StaticPrefix). Nothing is inline, so the
// Content-Security-Policy allows scripts and styles from this origin only
// (script-src 'self'; style-src 'self'): markup that slipped past escaping
// could neither run a script nor restyle the page. It needs nothing from
// outside the process (no CDN, fonts or libraries).
//
// The script re-fetches the refreshing part of the page (/ui/fragment) every
// Config.Refresh and swaps it in. Without JavaScript the page still works: a
// <noscript> meta refresh reloads it, and the flag switches are plain form
// posts.
//
// Routes, all served by the one handler New returns (the web role mounts it
// at / for every path no other route claims):
//
//	GET  /                                   the page
//	GET  /ui/fragment                        its refreshing part
//	GET  /ui/static/{file}                   script, style sheet, icon
//	GET  /ui/login                           the login form
//	POST /ui/login                           the admin token; sets the session cookie
//	POST /ui/logout                          ends the session
//	POST /ui/domains/{domain}/flags/{flag}   the switch; redirects to /
//
// Any other path is 404, another method 405.
//
// With a token configured (Config.Token), the page, its fragment and the
// switch need the session cookie the login sets (auth.Sessions: HttpOnly,
// SameSite=Strict, signed); the page without one redirects to the form.
// Every form post is refused cross-site (http.CrossOriginProtection), and
// the switch also needs the page's CSRF token.
package console
