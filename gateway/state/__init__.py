"""Where shared state lives: embedded (SQLite + in-process) by default, PostgreSQL and Redis when
configured, so N stateless replicas can run behind one load balancer (issue 11).

=====================  ==========================  =========================================
state                  embedded (one machine)      scaled out
=====================  ==========================  =========================================
directory, clients,    SQLite ``HOME/ztgw.db``     PostgreSQL (``directory_url``), schema by
OAuth, SSO sessions,                               alembic (:mod:`ztgw.gateway.migrations`)
revocations, catalogue
rate limits            in-process token buckets    Redis GCRA, one round trip (``redis_url``)
daily record quotas    in-process counters         Redis ``INCRBY`` per subject/dataset/day
change notices         polling only                Redis pub/sub (accelerator; the DB poll
                                                   stays the source of truth)
policy bundle          ``HOME/policies/active``    one shared folder (``policy_bundle``) +
                                                   Redis notice (``policy_redis_url``)
=====================  ==========================  =========================================
"""

from __future__ import annotations

from .redis_client import RedisUnavailable, StateSettings

__all__ = ["RedisUnavailable", "StateSettings"]  # engines: .database; Redis stores: .limits
