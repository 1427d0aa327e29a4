-- Owner: offline (modules/offline/offline.c).
--
-- Messages kept for accounts that had no available resource when they
-- arrived (XEP-0160), delivered at the next login with a XEP-0203 delay
-- stamp (the stored_at time) or retrieved with XEP-0013. The XEP-0013
-- node of a message is its id, in decimal. See docs/admin.md, "Offline
-- messages".

CREATE TABLE offline_message (
	id bigserial PRIMARY KEY,
	host text NOT NULL,
	username text NOT NULL,
	sender text NOT NULL,
	stanza text NOT NULL,
	stored_at timestamptz NOT NULL DEFAULT now(),
	size integer NOT NULL CHECK (size >= 0),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
CREATE INDEX offline_message_owner ON offline_message (host, username, id);
COMMENT ON TABLE offline_message IS
	'Owner: offline. One row per stored message for username@host, in arrival '
	'order (id). sender: the full JID it came from; stanza: the <message/> as '
	'received (jabber:client, no namespace declaration); size: its length in '
	'bytes (counted against [offline] max-bytes). Rows are deleted once handed '
	'to a session, or by XEP-0013 remove/purge, or with the account.';

CREATE VIEW magpie_offline_view AS
	SELECT username || '@' || host AS jid,
	       count(*) AS messages,
	       sum(size) AS bytes,
	       min(stored_at) AS oldest,
	       max(stored_at) AS newest
	FROM offline_message
	GROUP BY host, username;
COMMENT ON VIEW magpie_offline_view IS
	'Owner: offline. Stored offline messages per account: jid, messages, bytes, '
	'oldest, newest. Accounts with none are not listed.';

CREATE FUNCTION magpie_offline_purge(jid text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	j record;
	n bigint;
BEGIN
	j := magpie_account_split_jid(jid);
	DELETE FROM offline_message o WHERE o.host = j.host AND o.username = j.username;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END;
$$;
COMMENT ON FUNCTION magpie_offline_purge(text) IS
	'Owner: offline. Delete every stored offline message of user@host; '
	'returns how many were deleted.';
