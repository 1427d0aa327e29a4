-- Owner: last (modules/last): Last Activity (XEP-0012).
--
-- When each account last logged out (its last available resource went
-- unavailable, or its last session ended), and the status text of that
-- unavailable presence. Written by the daemon; an operator may edit or
-- delete rows (no NOTIFY needed: every query reads the table).

CREATE TABLE last_activity (
	host text NOT NULL,
	username text NOT NULL,
	logout_epoch bigint NOT NULL,
	status text,
	PRIMARY KEY (host, username),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE last_activity IS
	'Owner: last. XEP-0012: Unix time (seconds) of the account''s last logout '
	'and the <status/> text of its last unavailable presence (NULL: none).';
COMMENT ON COLUMN last_activity.logout_epoch IS
	'Seconds since 1970-01-01 UTC; to_timestamp(logout_epoch) for a date.';
