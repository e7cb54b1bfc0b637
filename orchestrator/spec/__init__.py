"""Job specs: YAML -> validated `JobSpec`, with line-numbered errors and JSON Schema."""
from orchestrator.spec.load import LoadedJob, load_job, load_job_text, parse_override
from orchestrator.spec.model import JobSpec

__all__ = ["JobSpec", "LoadedJob", "load_job", "load_job_text", "parse_override"]
