"""Version of the installed toolkit, recorded in checkpoints and sent as the download User-Agent."""

from importlib import metadata


def code_version() -> str:
    """Installed ``densechange`` version, or "unknown" when running from an uninstalled tree."""
    try:
        return metadata.version("densechange")
    except metadata.PackageNotFoundError:
        return "unknown"
