-- +goose Up
-- One claim model for both paths: a record being sent carries its claim's
-- owner (a batch or a legacy send), and next_check is the claim's expiry.
-- Outcomes change a record only while their writer's claim holds.
-- requested_state is an operator's requeue (1) or cancel (8) of a claimed
-- record, applied when the claim ends.
ALTER TABLE repeat_records
    ADD COLUMN claim_owner text,
    ADD COLUMN requested_state smallint CHECK (requested_state IN (1, 8));
COMMENT ON COLUMN repeat_records.claim_owner IS
    'who holds the claim on this record (batch:<token> or legacy:<token>); NULL = unclaimed; next_check is the claim''s expiry';
COMMENT ON COLUMN repeat_records.requested_state IS
    'an operator''s requeue (1) or cancel (8) waiting for the claim to end';

-- +goose Down
ALTER TABLE repeat_records DROP COLUMN claim_owner, DROP COLUMN requested_state;
