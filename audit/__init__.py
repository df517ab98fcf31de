"""ztgw audit: ECS events, durable spool, embedded store and sinks."""
