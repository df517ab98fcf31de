"""The Elasticsearch sink: ``_bulk`` ``create`` actions into ``logs-<dataset>-<namespace>``.

* Every action is ``create`` with ``_id`` = ``event.id`` (data streams are append-only, and
  a re-sent event then answers 409 instead of duplicating — counted as delivered).
* ``_bulk`` answers 200 even when items fail, so every item's status is checked: 409 is a
  duplicate (fine); 429 and 5xx are transient (the whole batch is re-sent after a backoff);
  any other 4xx is permanent for that event (a mapping conflict): it goes to a dead-letter
  file next to the spool, an alert is logged, and shipping goes on.
* A connection error or a non-2xx ``_bulk`` answer raises :class:`SinkError`: nothing is
  acknowledged, the spool keeps the batch.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import structlog
from elasticsearch import Elasticsearch, helpers
from elasticsearch.exceptions import ApiError, TransportError

from ..config import AuditSettings
from ..errors import SinkError

CHUNK = 500  # actions per _bulk request
TRANSIENT = frozenset({429, 500, 502, 503, 504})
_NAME = re.compile(r"^[a-z0-9_.]{1,100}$")  # data stream dataset/namespace (no '-')
ASSETS = ("ilm-policy.json", "ingest-pipeline.json", "component-template.json",
          "index-template.json")
ILM_POLICY = "ztgw-audit"
PIPELINE = "ztgw-audit"
COMPONENT = "ztgw@mappings"
INDEX_TEMPLATE = "logs-ztgw"

log = structlog.get_logger("ztgw.audit")


def asset(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(resources.files(__package__).joinpath(name).read_bytes())
    return data


def stream_name(doc: dict[str, Any]) -> str:
    ds = doc.get("data_stream") if isinstance(doc.get("data_stream"), dict) else {}
    dataset = ds.get("dataset", "ztgw.audit") if ds else "ztgw.audit"
    namespace = ds.get("namespace", "default") if ds else "default"
    if not isinstance(dataset, str) or not _NAME.match(dataset):
        dataset = "ztgw.audit"
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        namespace = "default"
    return f"logs-{dataset}-{namespace}"


def bulk_actions(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"_op_type": "create", "_index": stream_name(d), "_id": d["event"]["id"], "_source": d}
            for d in docs]


class ElasticsearchSink:
    name = "elasticsearch"

    def __init__(self, client: Elasticsearch, dead_letter: Path) -> None:
        self.client = client
        self.dead_letter = dead_letter
        self.dead = 0

    @classmethod
    def from_settings(cls, conf: AuditSettings) -> ElasticsearchSink:
        return cls(make_client(conf), conf.effective_spool_dir / "dead-letter" / "elasticsearch.jsonl")

    def send(self, docs: list[dict[str, Any]]) -> None:
        by_id = {d["event"]["id"]: d for d in docs}
        transient: list[str] = []
        permanent: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            for ok, item in helpers.streaming_bulk(
                self.client, bulk_actions(docs), chunk_size=CHUNK, raise_on_error=False,
                raise_on_exception=False, max_retries=0, ignore_status=(409,),
            ):
                if ok:
                    continue
                result = next(iter(item.values()))
                status = result.get("status")
                if status == 409:
                    continue  # already indexed by an earlier (re-)send
                if not isinstance(status, int) or status in TRANSIENT:
                    transient.append(f"{status}: {_reason(result)}")
                else:
                    permanent.append((by_id.get(str(result.get("_id")), {}), result))
        except (ApiError, TransportError) as exc:
            raise SinkError(f"elasticsearch: {type(exc).__name__}: {str(exc)[:200]}") from exc
        except (KeyError, TypeError, ValueError) as exc:  # an answer not shaped like _bulk's
            raise SinkError(f"elasticsearch: unexpected _bulk answer ({exc!r})") from exc
        if permanent:
            self._dead_letter(permanent)
        if transient:
            raise SinkError(f"elasticsearch: {len(transient)} items failed, e.g. {transient[0]}")

    def _dead_letter(self, items: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(orjson.dumps({"error": r.get("error"), "status": r.get("status"), "doc": d})
                        + b"\n" for d, r in items)
        fd = os.open(self.dead_letter, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.dead += len(items)
        log.error("elasticsearch refused audit events; kept in the dead-letter file",
                  count=len(items), file=str(self.dead_letter), reason=_reason(items[0][1]))

    def close(self) -> None:
        self.client.close()


def _reason(result: dict[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        return f"{error.get('type')}: {str(error.get('reason'))[:200]}"
    return str(error)[:200]


def make_client(conf: AuditSettings) -> Elasticsearch:
    if not conf.es_url:
        raise ValueError("no Elasticsearch URL configured")
    kwargs: dict[str, Any] = {"request_timeout": conf.es_timeout, "max_retries": 0,
                              "retry_on_timeout": False}
    if conf.es_api_key:
        kwargs["api_key"] = conf.es_api_key
    if conf.es_ca_certs:
        kwargs["ca_certs"] = str(conf.es_ca_certs)
    return Elasticsearch(conf.es_url, **kwargs)


def install(client: Elasticsearch) -> list[str]:
    """PUT the ILM policy, ingest pipeline, component and index template (idempotent)."""
    client.ilm.put_lifecycle(name=ILM_POLICY, body=asset("ilm-policy.json"))
    client.ingest.put_pipeline(id=PIPELINE, body=asset("ingest-pipeline.json"))
    client.cluster.put_component_template(name=COMPONENT, body=asset("component-template.json"))
    client.indices.put_index_template(name=INDEX_TEMPLATE, body=asset("index-template.json"))
    return [f"_ilm/policy/{ILM_POLICY}", f"_ingest/pipeline/{PIPELINE}",
            f"_component_template/{COMPONENT}", f"_index_template/{INDEX_TEMPLATE}"]
