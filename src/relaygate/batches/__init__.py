"""Batches run by relaygate: their work in the database, claimed row by row so replicas
share it (:mod:`.steps`), the output files (:mod:`.output`), and the loop that sends
each request through the proxy (:mod:`.runner`)."""
