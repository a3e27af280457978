"""The XML namespace of ncdma's domain metadata.

A module without imports: the hook tells a domain that opts in from any other by this
string alone, before it imports anything else (:mod:`ncdma.hook.entry`).
"""

NAMESPACE = "urn:ncdma:domain:1"
