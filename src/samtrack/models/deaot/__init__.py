"""DeAOT / AOT propagator: official architectures, checkpoint loading and SAM-Track's tracker."""
