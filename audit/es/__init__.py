"""Elasticsearch for the audit trail: the bulk sink and the data-stream assets it relies on
(ILM policy, ingest pipeline, component and index templates; copies in deploy/elasticsearch/)."""
