package walstats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// replConn is a replication connection in database mode (logical decoding
// and plain SQL): the slot commands, the stream and its acknowledgements.
// Nothing here knows what the messages mean; decode.go does.
type replConn struct {
	conn *pgconn.PgConn
	user string // the role, named in the fix for a refusal
}

// connect opens a replication connection with base's settings.
func connect(ctx context.Context, base *pgconn.Config) (*replConn, error) {
	cfg := base.Copy()
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, classify(fmt.Errorf("stats: replication connection: %w", err), base.User)
	}
	return &replConn{conn: conn, user: base.User}, nil
}

// close closes the connection, within 5s even if ctx has ended.
func (r *replConn) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return r.conn.Close(ctx)
}

// createSlot creates a pgoutput slot and exports a snapshot of the moment
// it starts at; the snapshot lasts until the connection's next command.
func (r *replConn) createSlot(ctx context.Context, slot string) (snapshot string, point pglogrepl.LSN, err error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, r.conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return "", 0, classify(fmt.Errorf("stats: create slot: %w", err), r.user)
	}
	point, err = pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return "", 0, fmt.Errorf("stats: slot's consistent point: %w", err)
	}
	return res.SnapshotName, point, nil
}

func (r *replConn) dropSlot(ctx context.Context, slot string) error {
	return pglogrepl.DropReplicationSlot(ctx, r.conn, slot, pglogrepl.DropReplicationSlotOptions{})
}

// startReplication streams slot from start through pgoutput (protocol 1)
// for publication; the names were validated as identifiers.
func (r *replConn) startReplication(ctx context.Context, slot, publication string, start pglogrepl.LSN) error {
	err := pglogrepl.StartReplication(ctx, r.conn, slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + publication + "'"},
	})
	if err != nil {
		return classify(fmt.Errorf("stats: start replication: %w", err), r.user)
	}
	return nil
}

// received is one message of the stream: a pgoutput message (wal), or a
// keepalive (the server's WAL end, and whether it wants an answer now).
type received struct {
	wal            []byte
	keepalive      bool
	serverWALEnd   pglogrepl.LSN
	serverTime     time.Time
	replyRequested bool
}

// errIdle is receive's answer when nothing came by the deadline.
var errIdle = errors.New("stats: nothing received")

// receive waits until deadline for the next message that matters.
func (r *replConn) receive(ctx context.Context, deadline time.Time) (received, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	msg, err := r.conn.ReceiveMessage(ctx)
	if pgconn.Timeout(err) {
		return received{}, errIdle
	}
	if err != nil {
		return received{}, fmt.Errorf("stats: receive: %w", err)
	}
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		return parseCopyData(msg.Data)
	case *pgproto3.ErrorResponse:
		return received{}, fmt.Errorf("stats: replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return received{}, errors.New("stats: the server ended the replication stream")
	}
	return received{}, errIdle
}

func parseCopyData(data []byte) (received, error) {
	if len(data) == 0 {
		return received{}, errIdle
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return received{}, fmt.Errorf("stats: keepalive: %w", err)
		}
		return received{keepalive: true, serverWALEnd: k.ServerWALEnd, serverTime: k.ServerTime,
			replyRequested: k.ReplyRequested}, nil
	case pglogrepl.XLogDataByteID:
		x, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return received{}, fmt.Errorf("stats: WAL data: %w", err)
		}
		return received{wal: x.WALData}, nil
	}
	return received{}, errIdle
}

// sendStatus acknowledges the slot up to applied: the server may recycle
// the WAL before it.
func (r *replConn) sendStatus(ctx context.Context, applied pglogrepl.LSN) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: applied})
	if err != nil {
		return fmt.Errorf("stats: acknowledge: %w", err)
	}
	return nil
}
