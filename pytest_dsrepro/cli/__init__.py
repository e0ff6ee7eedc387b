"""The dsrepro command: lab, shell, run, status, doctor."""
