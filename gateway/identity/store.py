"""Persistent state of the provider: authorization codes, refresh-token families, issued
access-token ids, the revocation list, SSO sessions, login throttling and TOTP enrolments.

It lives in the directory database (SQLite by default) so every worker process sees the same
state.  Secrets (codes, refresh tokens, session ids) are stored only as SHA-256 digests: a copy
of the database does not let anyone redeem them.  Times are integer UNIX seconds.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

auth_codes = sa.Table(
    "oauth_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False, default=""),
    sa.Column("nonce", sa.Text),
    sa.Column("code_challenge", sa.String(128)),
    sa.Column("code_challenge_method", sa.String(16)),
    sa.Column("auth_time", sa.Integer, nullable=False),
    sa.Column("acr", sa.String(64)),
    sa.Column("amr", sa.Text, nullable=False, default="[]"),
    sa.Column("sid", sa.String(64)),
    sa.Column("family_id", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)

families = sa.Table(
    "oauth_families", metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("sid", sa.String(64)),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("revoked_reason", sa.String(64)),
)

refresh_tokens = sa.Table(
    "oauth_refresh_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(64), nullable=False, index=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("scope", sa.Text, nullable=False, default=""),
    sa.Column("auth_time", sa.Integer, nullable=False),
    sa.Column("acr", sa.String(64)),
    sa.Column("amr", sa.Text, nullable=False, default="[]"),
    sa.Column("sid", sa.String(64)),
    sa.Column("issued_at", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Integer, nullable=False),
    sa.Column("rotated", sa.Boolean, nullable=False, default=False),
)

issued_access = sa.Table(
    "oauth_issued_access", metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(64), nullable=False, index=True),
    sa.Column("expires_at", sa.Integer, nullable=False),
)

revoked = sa.Table(
    "oauth_revoked", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("jti", sa.String(64), nullable=False, unique=True),
    sa.Column("expires_at", sa.Integer, nullable=False),
)

sessions = sa.Table(
    "sso_sessions", metadata,
    sa.Column("sid_hash", sa.String(64), primary_key=True),
    sa.Column("sid", sa.String(64), nullable=False, unique=True),  # public id (the `sid` claim)
    sa.Column("username", sa.String(128), nullable=False, index=True),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("last_seen", sa.Integer, nullable=False),
    sa.Column("auth_time", sa.Integer, nullable=False),
    sa.Column("acr", sa.String(64), nullable=False),
    sa.Column("amr", sa.Text, nullable=False, default="[]"),
    sa.Column("source_ip", sa.String(64)),
    sa.Column("user_agent", sa.String(256)),
    sa.Column("ended", sa.Boolean, nullable=False, default=False),
)

session_clients = sa.Table(
    "sso_session_clients", metadata,
    sa.Column("sid", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), primary_key=True),
)

client_logout = sa.Table(
    "oauth_client_logout", metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("backchannel_logout_uri", sa.Text),
    sa.Column("post_logout_redirect_uris", sa.Text, nullable=False, default="[]"),
    sa.Column("first_party", sa.Boolean, nullable=False, default=True),
    sa.Column("min_acr", sa.String(64)),  # the weakest acr this client accepts (step-up)
)

consents = sa.Table(
    "oauth_consents", metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("granted_at", sa.Integer, nullable=False),
)

throttle = sa.Table(
    "login_throttle", metadata,
    sa.Column("key", sa.String(160), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("last_failure", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.Integer, nullable=False, default=0),
)

totp = sa.Table(
    "user_totp", metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("secret_sealed", sa.Text, nullable=False),  # SM4-GCM under a key from the pepper
    sa.Column("confirmed", sa.Boolean, nullable=False, default=False),
    sa.Column("last_step", sa.Integer, nullable=False, default=0),  # replay protection
    sa.Column("created_at", sa.Integer, nullable=False),
)

identity_audit_outbox = sa.Table(  # admin CLI events on their way to the audit trail (auditing.py)
    "identity_audit_outbox", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("doc", sa.Text, nullable=False),
)

used_challenges = sa.Table(
    "login_challenges_used", metadata,
    sa.Column("challenge_hash", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Integer, nullable=False),
)

federated_links = sa.Table(
    "federated_links", metadata,
    sa.Column("provider", sa.String(64), primary_key=True),
    sa.Column("external_sub", sa.String(256), primary_key=True),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("linked_at", sa.Integer, nullable=False),
)


def create_tables(engine: sa.Engine, meta: sa.MetaData = metadata) -> None:
    """Create missing tables; tolerate another worker process creating them at the same time."""
    for attempt in range(3):
        try:
            meta.create_all(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError) as exc:
            if "already exists" not in str(exc) or attempt == 2:
                raise


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def now() -> int:
    return int(time.time())


@dataclass(frozen=True, slots=True)
class CodeRecord:
    client_id: str
    username: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    acr: str | None
    amr: tuple[str, ...]
    sid: str | None
    family_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    token_hash: str
    family_id: str
    client_id: str
    username: str
    scope: str
    auth_time: int
    acr: str | None
    amr: tuple[str, ...]
    sid: str | None
    issued_at: int
    expires_at: int
    rotated: bool
    family_revoked: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    sid: str
    username: str
    created_at: int
    last_seen: int
    auth_time: int
    acr: str
    amr: tuple[str, ...]
    source_ip: str | None
    user_agent: str | None
    ended: bool
    clients: tuple[str, ...] = ()


class OAuthStore:
    """All provider state behind one narrow seam (SQLAlchemy Core; SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine)

    # --- authorization codes (RFC 6749 §4.1.2: short-lived, single use) ----------------------
    def save_code(self, code: str, rec: CodeRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(auth_codes.insert().values(
                code_hash=digest(code), client_id=rec.client_id, username=rec.username,
                redirect_uri=rec.redirect_uri, scope=rec.scope, nonce=rec.nonce,
                code_challenge=rec.code_challenge, code_challenge_method=rec.code_challenge_method,
                auth_time=rec.auth_time, acr=rec.acr, amr=json.dumps(list(rec.amr)), sid=rec.sid,
                family_id=rec.family_id, expires_at=rec.expires_at, used=False,
            ))

    def consume_code(self, code: str, client_id: str) -> CodeRecord | None:
        """Atomically mark the code used and return it; a second use revokes what the first
        one produced (RFC 6749 §4.1.2, RFC 9700 §4.2.1) and returns None."""
        h = digest(code)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(auth_codes).where(auth_codes.c.code_hash == h)
                               ).mappings().first()
            if row is None or row["client_id"] != client_id:
                return None
            claimed = conn.execute(
                auth_codes.update().where(auth_codes.c.code_hash == h, auth_codes.c.used.is_(False))
                .values(used=True)
            ).rowcount
        if claimed != 1:
            self.revoke_family(row["family_id"], "code_replay")
            return None
        if row["expires_at"] < now():
            return None
        return CodeRecord(
            client_id=row["client_id"], username=row["username"], redirect_uri=row["redirect_uri"],
            scope=row["scope"], nonce=row["nonce"], code_challenge=row["code_challenge"],
            code_challenge_method=row["code_challenge_method"], auth_time=row["auth_time"],
            acr=row["acr"], amr=tuple(json.loads(row["amr"])), sid=row["sid"],
            family_id=row["family_id"], expires_at=row["expires_at"],
        )

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(auth_codes.c.code_hash).where(
                auth_codes.c.client_id == client_id, auth_codes.c.nonce == nonce,
                auth_codes.c.expires_at >= now()).limit(1)).first() is not None

    # --- token families ------------------------------------------------------------------------
    def create_family(self, family_id: str, client_id: str, username: str, sid: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(families.insert().values(
                family_id=family_id, client_id=client_id, username=username, sid=sid,
                created_at=now(), revoked=False))

    def family_revoked(self, family_id: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(families.c.revoked).where(
                families.c.family_id == family_id)).first()
        return row is None or bool(row[0])

    def record_access(self, jti: str, family_id: str, expires_at: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(issued_access.insert().values(jti=jti, family_id=family_id,
                                                       expires_at=expires_at))

    def save_refresh(self, token: str, rec: RefreshRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(refresh_tokens.insert().values(
                token_hash=digest(token), family_id=rec.family_id, client_id=rec.client_id,
                username=rec.username, scope=rec.scope, auth_time=rec.auth_time, acr=rec.acr,
                amr=json.dumps(list(rec.amr)), sid=rec.sid, issued_at=rec.issued_at,
                expires_at=rec.expires_at, rotated=False,
            ))

    def get_refresh(self, token: str) -> RefreshRecord | None:
        j = refresh_tokens.join(families, refresh_tokens.c.family_id == families.c.family_id)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(refresh_tokens, families.c.revoked.label("family_revoked")).select_from(j)
                .where(refresh_tokens.c.token_hash == digest(token))
            ).mappings().first()
        if row is None:
            return None
        return RefreshRecord(
            token_hash=row["token_hash"], family_id=row["family_id"], client_id=row["client_id"],
            username=row["username"], scope=row["scope"], auth_time=row["auth_time"],
            acr=row["acr"], amr=tuple(json.loads(row["amr"])), sid=row["sid"],
            issued_at=row["issued_at"], expires_at=row["expires_at"], rotated=bool(row["rotated"]),
            family_revoked=bool(row["family_revoked"]),
        )

    def rotate_refresh(self, token_hash: str) -> bool:
        """Mark a refresh token used; False if it had been used already (a race or a replay)."""
        with self.engine.begin() as conn:
            return conn.execute(
                refresh_tokens.update().where(refresh_tokens.c.token_hash == token_hash,
                                              refresh_tokens.c.rotated.is_(False))
                .values(rotated=True)
            ).rowcount == 1

    def revoke_family(self, family_id: str, reason: str) -> int:
        """Revoke every refresh token of a family and put its access tokens on the list."""
        with self.engine.begin() as conn:
            conn.execute(families.update().where(families.c.family_id == family_id)
                         .values(revoked=True, revoked_reason=reason))
            rows = conn.execute(sa.select(issued_access.c.jti, issued_access.c.expires_at).where(
                issued_access.c.family_id == family_id, issued_access.c.expires_at >= now() - 60
            )).all()
            for jti, exp in rows:
                self._revoke_jti(conn, jti, exp)
        return len(rows)

    def revoke_families_of_session(self, sid: str, reason: str) -> None:
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(sa.select(families.c.family_id).where(
                families.c.sid == sid, families.c.revoked.is_(False)))]
        for fid in ids:
            self.revoke_family(fid, reason)

    # --- the revocation list (jti), read by every worker's verifier ---------------------------
    @staticmethod
    def _revoke_jti(conn: sa.Connection, jti: str, expires_at: int) -> None:
        exists = conn.execute(sa.select(revoked.c.seq).where(revoked.c.jti == jti)).first()
        if exists is None:
            conn.execute(revoked.insert().values(jti=jti, expires_at=expires_at))

    def revoke_jti(self, jti: str, expires_at: int) -> None:
        with self.engine.begin() as conn:
            self._revoke_jti(conn, jti, expires_at)

    def revoked_since(self, seq: int) -> list[tuple[int, str, int]]:
        with self.engine.connect() as conn:
            return [(int(a), str(b), int(c)) for a, b, c in conn.execute(
                sa.select(revoked.c.seq, revoked.c.jti, revoked.c.expires_at)
                .where(revoked.c.seq > seq).order_by(revoked.c.seq))]

    def is_jti_revoked(self, jti: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(revoked.c.seq).where(revoked.c.jti == jti)).first() is not None

    # --- SSO sessions ------------------------------------------------------------------------
    def create_session(self, secret: str, sid: str, username: str, acr: str, amr: tuple[str, ...],
                       source_ip: str | None, user_agent: str | None) -> None:
        t = now()
        with self.engine.begin() as conn:
            conn.execute(sessions.insert().values(
                sid_hash=digest(secret), sid=sid, username=username, created_at=t, last_seen=t,
                auth_time=t, acr=acr, amr=json.dumps(amr), source_ip=source_ip,
                user_agent=(user_agent or "")[:256], ended=False))

    def _session_from_row(self, conn: sa.Connection, row: Any) -> SessionRecord:
        cl = tuple(r[0] for r in conn.execute(sa.select(session_clients.c.client_id).where(
            session_clients.c.sid == row["sid"]).order_by(session_clients.c.client_id)))
        return SessionRecord(
            sid=row["sid"], username=row["username"], created_at=row["created_at"],
            last_seen=row["last_seen"], auth_time=row["auth_time"], acr=row["acr"],
            amr=tuple(json.loads(row["amr"])), source_ip=row["source_ip"],
            user_agent=row["user_agent"], ended=bool(row["ended"]), clients=cl)

    def session_by_secret(self, secret: str) -> SessionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.sid_hash == digest(secret))
                               ).mappings().first()
            return None if row is None else self._session_from_row(conn, row)

    def session_by_sid(self, sid: str) -> SessionRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.sid == sid)).mappings().first()
            return None if row is None else self._session_from_row(conn, row)

    def touch_session(self, sid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where(sessions.c.sid == sid).values(last_seen=now()))

    def step_up_session(self, sid: str, acr: str, amr: tuple[str, ...]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where(sessions.c.sid == sid).values(
                acr=acr, amr=json.dumps(amr), auth_time=now(), last_seen=now()))

    def rekey_session(self, sid: str, new_secret: str) -> None:
        """A new cookie secret for an existing session (after step-up: no fixation)."""
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where(sessions.c.sid == sid)
                         .values(sid_hash=digest(new_secret)))

    def add_session_client(self, sid: str, client_id: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(session_clients.c.sid).where(
                    session_clients.c.sid == sid, session_clients.c.client_id == client_id)).first() is None:
                conn.execute(session_clients.insert().values(sid=sid, client_id=client_id))

    def end_session(self, sid: str) -> SessionRecord | None:
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where(sessions.c.sid == sid).values(ended=True))
        return self.session_by_sid(sid)

    def list_sessions(self, username: str | None = None, active_only: bool = True) -> list[SessionRecord]:
        q = sa.select(sessions).order_by(sessions.c.created_at.desc())
        if username is not None:
            q = q.where(sessions.c.username == username)
        if active_only:
            q = q.where(sessions.c.ended.is_(False))
        with self.engine.connect() as conn:
            return [self._session_from_row(conn, r) for r in conn.execute(q).mappings()]

    # --- per-client logout and consent settings ------------------------------------------------
    def set_client_logout(self, client_id: str, backchannel_logout_uri: str | None,
                          post_logout_redirect_uris: tuple[str, ...], first_party: bool = True,
                          min_acr: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(client_logout.delete().where(client_logout.c.client_id == client_id))
            conn.execute(client_logout.insert().values(
                client_id=client_id, backchannel_logout_uri=backchannel_logout_uri,
                post_logout_redirect_uris=json.dumps(list(post_logout_redirect_uris)),
                first_party=first_party, min_acr=min_acr))

    def client_logout(self, client_id: str) -> tuple[str | None, tuple[str, ...], bool]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(client_logout).where(client_logout.c.client_id == client_id)
                               ).mappings().first()
        if row is None:
            return None, (), True
        return (row["backchannel_logout_uri"], tuple(json.loads(row["post_logout_redirect_uris"])),
                bool(row["first_party"]))

    def client_min_acr(self, client_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(client_logout.c.min_acr).where(
                client_logout.c.client_id == client_id)).first()
        return str(row[0]) if row and row[0] else None

    def consented_scope(self, username: str, client_id: str) -> set[str]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(consents.c.scope).where(
                consents.c.username == username, consents.c.client_id == client_id)).first()
        return set(row[0].split()) if row else set()

    def save_consent(self, username: str, client_id: str, scope: set[str]) -> None:
        merged = self.consented_scope(username, client_id) | scope
        with self.engine.begin() as conn:
            conn.execute(consents.delete().where(consents.c.username == username,
                                                 consents.c.client_id == client_id))
            conn.execute(consents.insert().values(username=username, client_id=client_id,
                                                  scope=" ".join(sorted(merged)), granted_at=now()))

    # --- login throttling ------------------------------------------------------------------------
    def throttle_get(self, key: str) -> tuple[int, int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(throttle.c.failures, throttle.c.last_failure,
                                         throttle.c.locked_until).where(throttle.c.key == key)).first()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)

    def throttle_put(self, key: str, failures: int, last_failure: int, locked_until: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(throttle.delete().where(throttle.c.key == key))
            conn.execute(throttle.insert().values(key=key, failures=failures,
                                                  last_failure=last_failure, locked_until=locked_until))

    def throttle_clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(throttle.delete().where(throttle.c.key == key))

    # --- TOTP -------------------------------------------------------------------------------------
    def totp_get(self, username: str) -> tuple[str, bool, int] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(totp.c.secret_sealed, totp.c.confirmed, totp.c.last_step)
                               .where(totp.c.username == username)).first()
        return (str(row[0]), bool(row[1]), int(row[2])) if row else None

    def totp_put(self, username: str, sealed: str, confirmed: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(totp.delete().where(totp.c.username == username))
            conn.execute(totp.insert().values(username=username, secret_sealed=sealed,
                                              confirmed=confirmed, last_step=0, created_at=now()))

    def totp_confirm(self, username: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(totp.update().where(totp.c.username == username).values(confirmed=True))

    def totp_delete(self, username: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(totp.delete().where(totp.c.username == username))

    def totp_advance(self, username: str, step: int) -> bool:
        """Record the time step used; False if it (or a later one) was used already (replay)."""
        with self.engine.begin() as conn:
            return conn.execute(totp.update().where(totp.c.username == username,
                                                    totp.c.last_step < step).values(last_step=step)
                                ).rowcount == 1

    # --- federation -------------------------------------------------------------------------------
    def linked_user(self, provider: str, external_sub: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(federated_links.c.username).where(
                federated_links.c.provider == provider,
                federated_links.c.external_sub == external_sub)).first()
        return str(row[0]) if row else None

    def link_user(self, provider: str, external_sub: str, username: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(federated_links.insert().values(provider=provider, external_sub=external_sub,
                                                         username=username, linked_at=now()))

    # --- single-use login challenges (certificate login) --------------------------------------
    def use_challenge(self, challenge_hash: str, expires_at: int) -> bool:
        """Record a challenge as used; False if it had been used already."""
        try:
            with self.engine.begin() as conn:
                conn.execute(used_challenges.insert().values(challenge_hash=challenge_hash,
                                                             expires_at=expires_at))
        except sa.exc.IntegrityError:
            return False
        return True

    # --- housekeeping -------------------------------------------------------------------------------
    def purge_expired(self) -> None:
        t = now() - 3600
        with self.engine.begin() as conn:
            conn.execute(auth_codes.delete().where(auth_codes.c.expires_at < t))
            conn.execute(issued_access.delete().where(issued_access.c.expires_at < t))
            conn.execute(refresh_tokens.delete().where(refresh_tokens.c.expires_at < t))
            conn.execute(used_challenges.delete().where(used_challenges.c.expires_at < t))
