// Package benchdb is the SQL of `repeaterd bench` (cmd/repeaterd/internal/bench):
// creating and dropping the scenarios' databases, seeding histories and
// backlogs, counting what was delivered, timing and explaining queries, and
// following the WAL position the stats consumer has applied.
//
// Nothing here runs in production, so none of it is a method of store.Store;
// each function takes the pool (store.Store.Pool) or a server URL. It lives
// under store because store is where the project's SQL is.
package benchdb
