"""The fault-injection suite: the server under the faults it must survive (killed, stopped, a hanging or failing
Twilio, a full disk, a lost database, a dead replica), each ending in a definite, truthful outcome."""
