"""dotnet-monitor's HTTP API, spoken through a pod tunnel."""
