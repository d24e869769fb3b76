"""Configuration as code: the workspace's environments, metrics, experiments and flags as one file.

``export`` writes the document (the API's shapes, without owners, dates of record and versions);
``plan`` compares a document with the database, object by object and field by field; ``apply``
imports it in one transaction through the API's serializers and the apps' services, so the same
rules hold as in the admin and the API, and a file with one bad object writes nothing;
``formats`` reads and writes YAML and JSON.
"""
