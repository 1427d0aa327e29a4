-- Owner: private (modules/private): Private XML Storage (XEP-0049).
--
-- One XML element per (account, namespace), stored as the serialized
-- element (with its xmlns). The daemon enforces the size limit
-- ([private] max-size) and the number of namespaces ([private]
-- max-entries); rows written by SQL are served as they are and must be one
-- well-formed element in the row's namespace.

CREATE TABLE private_storage (
	host text NOT NULL,
	username text NOT NULL,
	namespace text NOT NULL CHECK (namespace NOT IN
		('', 'jabber:client', 'jabber:server', 'jabber:iq:private')),
	xml text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (host, username, namespace),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE private_storage IS
	'Owner: private. XEP-0049 private XML: one element (xml, serialized with '
	'its xmlns) per account and namespace. Deleted with the account.';
