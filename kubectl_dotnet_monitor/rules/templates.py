"""Ready rules files to start from: ``kubectl dotnet-monitor rules example NAME``.

Each is a complete, valid rules file (tests check every one against the schema). They egress to a
FileSystem provider on the diagnostics volume the monitor shares with the app (``/diag`` in the
usual set-up, see the README), so they work without cloud credentials; the comments show how to
send artifacts to S3 or Azure Blob Storage with the credentials in a Secret instead.
"""

from __future__ import annotations

from kubectl_dotnet_monitor.errors import UsageError

_EGRESS = """\
Egress:
  FileSystem:
    artifacts:
      # On the volume the monitor shares with the app: change /diag to where your pod mounts it.
      DirectoryPath: /diag/artifacts
  # Object storage instead: the credentials stay in a Secret of the pod's namespace
  #   kubectl create secret generic s3-creds -n NAMESPACE --from-literal=secretAccessKey=...
  # S3Storage:
  #   s3:
  #     BucketName: my-dumps
  #     RegionName: eu-west-1
  #     AccessKeyId: AKIA...
  #     SecretAccessKey:
  #       secretKeyRef: {name: s3-creds, key: secretAccessKey}
  # AzureBlobStorage:
  #   blob:
  #     AccountUri: https://ACCOUNT.blob.core.windows.net
  #     ContainerName: dumps
  #     SharedAccessSignature:
  #       secretKeyRef: {name: blob-sas, key: sas}
"""

_HIGH_CPU = """\
# high-cpu: CPU above 80% for a minute -> a 30-second CPU trace.
# Use: kubectl dotnet-monitor inject POD --rules high-cpu.yaml
CollectionRules:
  HighCpu:
    Trigger:
      Type: CPUUsage
      Settings:
        GreaterThan: 80                  # percent (0-100)
        SlidingWindowDuration: "00:01:00"
    Actions:
      - Type: CollectTrace
        Settings:
          Profile: Cpu
          Duration: "00:00:30"
          Egress: artifacts
    Limits:                              # at most 2 traces an hour
      ActionCount: 2
      ActionCountSlidingWindowDuration: "01:00:00"
""" + _EGRESS

_MEMORY_LEAK = """\
# memory-leak: GC heap above 1 GiB for 5 minutes -> a GC dump (types and counts, not a full dump).
# Use: kubectl dotnet-monitor inject POD --rules memory-leak.yaml
CollectionRules:
  MemoryLeak:
    Trigger:
      Type: GCHeapSize
      Settings:
        GreaterThan: 1024                # megabytes
        SlidingWindowDuration: "00:05:00"
    Actions:
      - Type: CollectGCDump
        Settings:
          Egress: artifacts
    Limits:                              # one per 6 hours: compare two of them to find the growth
      ActionCount: 1
      ActionCountSlidingWindowDuration: "06:00:00"
""" + _EGRESS

_SLOW_REQUESTS = """\
# slow-requests: 5 requests slower than 3 seconds within a minute -> a CPU+HTTP trace and logs.
# Use: kubectl dotnet-monitor inject POD --rules slow-requests.yaml
CollectionRules:
  SlowRequests:
    Trigger:
      Type: AspNetRequestDuration
      Settings:
        RequestCount: 5
        RequestDuration: "00:00:03"
        SlidingWindowDuration: "00:01:00"
        # ExcludePaths: [/healthz]       # requests to ignore
    Actions:
      - Type: CollectTrace
        Settings:
          Profile: Cpu,Http
          Duration: "00:00:30"
          Egress: artifacts
      - Type: CollectLogs
        Settings:
          DefaultLevel: Information
          Duration: "00:00:30"
          Egress: artifacts
    Limits:
      ActionCount: 3
      ActionCountSlidingWindowDuration: "01:00:00"
""" + _EGRESS

_HTTP_5XX = """\
# http-5xx: 10 responses with status 500-599 within a minute -> logs and an HTTP trace.
# Use: kubectl dotnet-monitor inject POD --rules http-5xx.yaml
CollectionRules:
  Http5xx:
    Trigger:
      Type: AspNetResponseStatus
      Settings:
        StatusCodes: ["500-599"]
        ResponseCount: 10
        SlidingWindowDuration: "00:01:00"
    Actions:
      - Type: CollectLogs
        Settings:
          DefaultLevel: Warning
          Duration: "00:01:00"
          Egress: artifacts
      - Type: CollectTrace
        Settings:
          Profile: Http
          Duration: "00:00:30"
          Egress: artifacts
    Limits:
      ActionCount: 3
      ActionCountSlidingWindowDuration: "01:00:00"
""" + _EGRESS

#: What ``rules example`` prints, by name.
EXAMPLES: dict[str, str] = {
    "high-cpu": _HIGH_CPU,
    "memory-leak": _MEMORY_LEAK,
    "slow-requests": _SLOW_REQUESTS,
    "http-5xx": _HTTP_5XX,
}


def example_names() -> tuple[str, ...]:
    """The template names, in the order they are documented."""
    return tuple(EXAMPLES)


def example(name: str) -> str:
    """The YAML text of template ``name``; ``UsageError`` listing the names when unknown."""
    try:
        return EXAMPLES[name]
    except KeyError:
        raise UsageError(
            f"no example named {name!r}; choose one of: {', '.join(EXAMPLES)}",
            hint="for example: kubectl dotnet-monitor rules example high-cpu > rules.yaml",
        ) from None
