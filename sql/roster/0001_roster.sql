-- Owner: roster (modules/roster). Also used by: presence (modules/presence),
-- through the functions magpie_roster_subscription_out/_in below.
--
-- Rosters (RFC 6121 §2), subscription states (RFC 6121 §3, Appendix A),
-- roster versioning (XEP-0237) and the operator interface (docs/admin.md,
-- "Roster"). Every change to a roster item bumps the owner's version, is
-- logged in roster_changes and is announced with
--   NOTIFY magpie_roster, '<owner> <contact> <origin> <old-subscription>
--                         <old-ask-out> <old-ask-in> <old-visible>'
-- (old-* are '-' for a new row); the running server pushes it to the
-- owner's online resources. <origin> is 'client', 'presence' or 'sql'.

CREATE TABLE roster_item (
	host text NOT NULL,
	username text NOT NULL,
	contact text NOT NULL CHECK (contact <> '' AND contact !~ '[/[:space:]]'),
	name text,
	subscription text NOT NULL DEFAULT 'none'
		CHECK (subscription IN ('none', 'to', 'from', 'both')),
	ask_out boolean NOT NULL DEFAULT false,
	ask_in boolean NOT NULL DEFAULT false,
	approved boolean NOT NULL DEFAULT false,
	stanza_in text,
	groups text[] NOT NULL DEFAULT '{}',
	in_roster boolean NOT NULL DEFAULT true,
	PRIMARY KEY (host, username, contact),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE roster_item IS
	'Owner: roster. One row per (account, contact bare JID). subscription: none/to/from/both '
	'(RFC 6121 §2.1.2.5); ask_out: our subscription request is pending (ask=''subscribe''); '
	'ask_in: the contact''s request is pending, its stanza kept in stanza_in and redelivered '
	'at login; approved: pre-approval (§3.4); in_roster = false for an item that exists only '
	'because of an unanswered inbound request (not shown to the user, §3.1.3).';

CREATE TABLE roster_version (
	host text NOT NULL,
	username text NOT NULL,
	version bigint NOT NULL DEFAULT 0,
	log_floor bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (host, username),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE roster_version IS
	'Owner: roster. Roster version per account (XEP-0237): bumped by every change. '
	'roster_changes holds every change after log_floor.';

CREATE TABLE roster_changes (
	host text NOT NULL,
	username text NOT NULL,
	version bigint NOT NULL,
	contact text NOT NULL,
	PRIMARY KEY (host, username, version),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE roster_changes IS
	'Owner: roster. The contacts changed at each recent version (the last 200 per account), '
	'for incremental roster versioning (XEP-0237 §4).';

-- The roster as users see it (the contract for other modules and operators).
CREATE VIEW magpie_roster_view AS
SELECT username || '@' || host AS owner,
       contact,
       name,
       subscription,
       CASE WHEN ask_out THEN 'subscribe' END AS ask,
       approved,
       groups
FROM roster_item
WHERE in_roster;
COMMENT ON VIEW magpie_roster_view IS
	'Owner: roster. Roster items: owner and contact bare JIDs, name, subscription '
	'(none/to/from/both), ask (NULL or ''subscribe''), approved, groups.';

CREATE FUNCTION roster_item_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	r roster_item;
	v bigint;
	origin text := coalesce(nullif(current_setting('magpie.roster_origin', true), ''), 'sql');
	keep constant bigint := 200;
BEGIN
	IF TG_OP = 'DELETE' THEN
		r := OLD;
	ELSE
		r := NEW;
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.contact = OLD.contact
	   AND NEW.name IS NOT DISTINCT FROM OLD.name AND NEW.subscription = OLD.subscription
	   AND NEW.ask_out = OLD.ask_out AND NEW.approved = OLD.approved
	   AND NEW.groups = OLD.groups AND NEW.in_roster = OLD.in_roster THEN
		RETURN NULL;
	END IF;
	-- An account being deleted takes its roster with it: nothing to announce.
	IF NOT EXISTS (SELECT 1 FROM accounts a WHERE a.host = r.host AND a.username = r.username) THEN
		RETURN NULL;
	END IF;
	INSERT INTO roster_version AS rv (host, username, version) VALUES (r.host, r.username, 1)
	ON CONFLICT (host, username) DO UPDATE SET version = rv.version + 1
	RETURNING rv.version INTO v;
	INSERT INTO roster_changes (host, username, version, contact)
	VALUES (r.host, r.username, v, r.contact);
	IF TG_OP = 'UPDATE' AND NEW.contact <> OLD.contact THEN
		-- The old contact is gone from the roster as well.
		INSERT INTO roster_version AS rv (host, username, version) VALUES (r.host, r.username, 1)
		ON CONFLICT (host, username) DO UPDATE SET version = rv.version + 1
		RETURNING rv.version INTO v;
		INSERT INTO roster_changes (host, username, version, contact)
		VALUES (r.host, r.username, v, OLD.contact);
		PERFORM pg_notify('magpie_roster', concat_ws(' ', r.username || '@' || r.host,
			OLD.contact, origin, OLD.subscription, OLD.ask_out, OLD.ask_in, OLD.in_roster));
	END IF;
	IF v > keep AND v % 20 = 0 THEN
		DELETE FROM roster_changes c
		WHERE c.host = r.host AND c.username = r.username AND c.version <= v - keep;
		UPDATE roster_version SET log_floor = v - keep
		WHERE host = r.host AND username = r.username;
	END IF;
	IF TG_OP = 'INSERT' THEN
		PERFORM pg_notify('magpie_roster', concat_ws(' ', r.username || '@' || r.host,
			r.contact, origin, '-', '-', '-', '-'));
	ELSIF TG_OP = 'UPDATE' AND NEW.contact <> OLD.contact THEN
		PERFORM pg_notify('magpie_roster', concat_ws(' ', r.username || '@' || r.host,
			r.contact, origin, '-', '-', '-', '-'));
	ELSE
		PERFORM pg_notify('magpie_roster', concat_ws(' ', r.username || '@' || r.host,
			r.contact, origin, OLD.subscription, OLD.ask_out, OLD.ask_in, OLD.in_roster));
	END IF;
	RETURN NULL;
END;
$$;

CREATE TRIGGER roster_item_notify AFTER INSERT OR UPDATE OR DELETE ON roster_item
	FOR EACH ROW EXECUTE FUNCTION roster_item_changed();

-- Operators: add or update an item. @owner_jid "user@host"; @contact_jid a
-- bare JID (lowercased here: use prepared JIDs for anything but ASCII).
CREATE FUNCTION magpie_roster_add(owner_jid text, contact_jid text, name text DEFAULT NULL,
                                  groups text[] DEFAULT '{}', subscription text DEFAULT 'none')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	o record;
	c text := lower(contact_jid);
BEGIN
	o := magpie_account_split_jid(owner_jid);
	IF NOT EXISTS (SELECT 1 FROM accounts a WHERE a.host = o.host AND a.username = o.username) THEN
		RAISE EXCEPTION 'no such account: %', owner_jid;
	END IF;
	IF c !~ '^([^@/[:space:]]+@)?[^@/[:space:]]+$' THEN
		RAISE EXCEPTION 'not a bare JID: %', contact_jid;
	END IF;
	INSERT INTO roster_item AS ri (host, username, contact, name, groups, subscription)
	VALUES (o.host, o.username, c, nullif(name, ''), coalesce(groups, '{}'), subscription)
	ON CONFLICT (host, username, contact) DO UPDATE
	SET name = EXCLUDED.name, groups = EXCLUDED.groups, subscription = EXCLUDED.subscription,
	    in_roster = true;
END;
$$;
COMMENT ON FUNCTION magpie_roster_add(text, text, text, text[], text) IS
	'Owner: roster. Add or update a roster item; online resources get a roster push.';

CREATE FUNCTION magpie_roster_remove(owner_jid text, contact_jid text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	o record;
BEGIN
	o := magpie_account_split_jid(owner_jid);
	DELETE FROM roster_item
	WHERE host = o.host AND username = o.username AND contact = lower(contact_jid);
	RETURN FOUND;
END;
$$;
COMMENT ON FUNCTION magpie_roster_remove(text, text) IS
	'Owner: roster. Remove a roster item (no unsubscribe is sent); TRUE if it existed.';

-- Client roster set (RFC 6121 §2.3): name and groups only. Returns false
-- when the item is new and the roster already holds @max_items items.
CREATE FUNCTION magpie_roster_client_set(p_host text, p_username text, p_contact text,
                                         p_name text, p_groups text[], max_items integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('magpie.roster_origin', 'client', true);
	UPDATE roster_item SET name = p_name, groups = p_groups, in_roster = true
	WHERE host = p_host AND username = p_username AND contact = p_contact;
	IF FOUND THEN
		RETURN true;
	END IF;
	-- Serialise concurrent additions to one roster on its version row.
	INSERT INTO roster_version (host, username) VALUES (p_host, p_username)
	ON CONFLICT DO NOTHING;
	PERFORM 1 FROM roster_version WHERE host = p_host AND username = p_username FOR UPDATE;
	IF (SELECT count(*) FROM roster_item WHERE host = p_host AND username = p_username)
	   >= max_items THEN
		RETURN false;
	END IF;
	INSERT INTO roster_item (host, username, contact, name, groups)
	VALUES (p_host, p_username, p_contact, p_name, p_groups)
	ON CONFLICT (host, username, contact) DO UPDATE
	SET name = EXCLUDED.name, groups = EXCLUDED.groups, in_roster = true;
	RETURN true;
END;
$$;

CREATE FUNCTION magpie_roster_client_remove(p_host text, p_username text, p_contact text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('magpie.roster_origin', 'client', true);
	DELETE FROM roster_item WHERE host = p_host AND username = p_username AND contact = p_contact;
	RETURN FOUND;
END;
$$;

-- RFC 6121 Appendix A.2: the user (p_host, p_username) sends a subscription
-- stanza of @p_type to @p_contact. Returns whether to route it, and the
-- subscription before and after.
CREATE FUNCTION magpie_roster_subscription_out(p_host text, p_username text, p_contact text,
                                               p_type text,
                                               OUT route boolean, OUT old_sub text,
                                               OUT new_sub text)
LANGUAGE plpgsql AS $$
DECLARE
	r roster_item;
	found_row boolean;
	s text;
	ao boolean;
	ai boolean;
	ap boolean;
	vis boolean;
BEGIN
	PERFORM set_config('magpie.roster_origin', 'presence', true);
	SELECT * INTO r FROM roster_item
	WHERE host = p_host AND username = p_username AND contact = p_contact FOR UPDATE;
	found_row := FOUND;
	s := coalesce(r.subscription, 'none');
	ao := coalesce(r.ask_out, false);
	ai := coalesce(r.ask_in, false);
	ap := coalesce(r.approved, false);
	vis := coalesce(r.in_roster, true);
	old_sub := s;
	route := false;
	IF p_type = 'subscribe' THEN
		-- A.2.1: always routed; None and From gain Pending Out.
		route := true;
		IF s IN ('none', 'from') THEN
			ao := true;
		END IF;
		vis := true;
	ELSIF p_type = 'unsubscribe' THEN
		-- A.2.2
		route := true;
		ao := false;
		IF s = 'to' THEN
			s := 'none';
		ELSIF s = 'both' THEN
			s := 'from';
		END IF;
	ELSIF p_type = 'subscribed' THEN
		-- A.2.3, and pre-approval (§3.4)
		IF ai THEN
			route := true;
			ai := false;
			ap := false;
			s := CASE s WHEN 'none' THEN 'from' WHEN 'to' THEN 'both' ELSE s END;
			vis := true;
		ELSIF s IN ('none', 'to') THEN
			ap := true;
			vis := true;
		END IF;
	ELSIF p_type = 'unsubscribed' THEN
		-- A.2.4; also cancels a pre-approval
		IF ai OR s IN ('from', 'both') THEN
			route := true;
		END IF;
		ai := false;
		ap := false;
		s := CASE s WHEN 'from' THEN 'none' WHEN 'both' THEN 'to' ELSE s END;
	ELSE
		RAISE EXCEPTION 'not an outbound subscription type: %', p_type;
	END IF;
	new_sub := s;
	IF NOT vis AND s = 'none' AND NOT ao AND NOT ai AND NOT ap THEN
		IF found_row THEN
			DELETE FROM roster_item
			WHERE host = p_host AND username = p_username AND contact = p_contact;
		END IF;
	ELSIF found_row THEN
		UPDATE roster_item
		SET subscription = s, ask_out = ao, ask_in = ai, approved = ap, in_roster = vis,
		    stanza_in = CASE WHEN ai THEN stanza_in END
		WHERE host = p_host AND username = p_username AND contact = p_contact;
	ELSIF s <> 'none' OR ao OR ai OR ap THEN
		INSERT INTO roster_item (host, username, contact, subscription, ask_out, ask_in,
		                         approved, in_roster)
		VALUES (p_host, p_username, p_contact, s, ao, ai, ap, vis);
	END IF;
END;
$$;

-- RFC 6121 Appendix A.3: a subscription stanza of @p_type from @p_contact
-- reaches the user. action: 'deliver' (state changed, give it to the
-- user), 'drop', 'autoreply' (answer subscribed for the user: already
-- subscribed, or pre-approved), 'full' (no room for a new item),
-- 'no-account'.
CREATE FUNCTION magpie_roster_subscription_in(p_host text, p_username text, p_contact text,
                                              p_type text, p_stanza text, max_items integer,
                                              OUT action text, OUT old_sub text,
                                              OUT new_sub text)
LANGUAGE plpgsql AS $$
DECLARE
	r roster_item;
	found_row boolean;
	s text;
	ao boolean;
	ai boolean;
	ap boolean;
	vis boolean;
	st text;
BEGIN
	PERFORM set_config('magpie.roster_origin', 'presence', true);
	IF NOT EXISTS (SELECT 1 FROM accounts a WHERE a.host = p_host AND a.username = p_username) THEN
		action := 'no-account';
		RETURN;
	END IF;
	SELECT * INTO r FROM roster_item
	WHERE host = p_host AND username = p_username AND contact = p_contact FOR UPDATE;
	found_row := FOUND;
	s := coalesce(r.subscription, 'none');
	ao := coalesce(r.ask_out, false);
	ai := coalesce(r.ask_in, false);
	ap := coalesce(r.approved, false);
	vis := coalesce(r.in_roster, false);
	st := r.stanza_in;
	old_sub := s;
	action := 'drop';
	IF p_type = 'subscribe' THEN
		IF s IN ('from', 'both') THEN
			action := 'autoreply';
		ELSIF ap THEN
			action := 'autoreply';
			ap := false;
			s := CASE s WHEN 'none' THEN 'from' ELSE 'both' END;
		ELSIF NOT ai THEN
			IF NOT found_row AND (SELECT count(*) FROM roster_item
			                      WHERE host = p_host AND username = p_username) >= max_items THEN
				action := 'full';
				new_sub := s;
				RETURN;
			END IF;
			action := 'deliver';
			ai := true;
			st := p_stanza;
		END IF;
	ELSIF p_type = 'unsubscribe' THEN
		IF ai OR s IN ('from', 'both') THEN
			action := 'deliver';
			ai := false;
			s := CASE s WHEN 'from' THEN 'none' WHEN 'both' THEN 'to' ELSE s END;
		END IF;
	ELSIF p_type = 'subscribed' THEN
		IF ao THEN
			action := 'deliver';
			ao := false;
			s := CASE s WHEN 'none' THEN 'to' WHEN 'from' THEN 'both' ELSE s END;
		END IF;
	ELSIF p_type = 'unsubscribed' THEN
		IF ao OR s IN ('to', 'both') THEN
			action := 'deliver';
			ao := false;
			s := CASE s WHEN 'to' THEN 'none' WHEN 'both' THEN 'from' ELSE s END;
		END IF;
	ELSE
		RAISE EXCEPTION 'not an inbound subscription type: %', p_type;
	END IF;
	new_sub := s;
	IF s <> 'none' THEN
		vis := true;
	END IF;
	IF NOT ai THEN
		st := NULL;
	END IF;
	IF NOT vis AND s = 'none' AND NOT ao AND NOT ai AND NOT ap THEN
		IF found_row THEN
			DELETE FROM roster_item
			WHERE host = p_host AND username = p_username AND contact = p_contact;
		END IF;
	ELSIF found_row THEN
		UPDATE roster_item
		SET subscription = s, ask_out = ao, ask_in = ai, approved = ap, in_roster = vis,
		    stanza_in = st
		WHERE host = p_host AND username = p_username AND contact = p_contact;
	ELSIF s <> 'none' OR ao OR ai OR ap THEN
		INSERT INTO roster_item (host, username, contact, subscription, ask_out, ask_in,
		                         approved, in_roster, stanza_in)
		VALUES (p_host, p_username, p_contact, s, ao, ai, ap, vis, st);
	END IF;
END;
$$;
