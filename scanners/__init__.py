"""ztgw scanners: detection rules, posture scanners and drills."""
