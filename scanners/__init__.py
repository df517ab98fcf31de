"""ztgw scanners: detection rules, automatic response, posture scanners and drills.

Public surface (see docs/detection.md):

* :class:`~ztgw.scanners.engine.DetectionEngine` / :class:`~ztgw.scanners.engine.DetectionService`
  and :func:`~ztgw.scanners.engine.build_service` — Sigma + stateful detection over the audit
  stream, alerts as ECS events;
* :class:`~ztgw.scanners.response.ResponseBook`, :class:`~ztgw.scanners.response.Blocklist`,
  :class:`~ztgw.scanners.response.ResponseActions` — automatic response and the data plane's
  read side;
* :func:`~ztgw.scanners.sigma.load_rules`, :func:`~ztgw.scanners.sigma.to_elasticsearch`;
* ``ztgw.scanners.cli`` — ``alerts_app``, ``drill_app`` and the ``scan`` commands.
"""
