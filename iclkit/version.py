"""The package version, in a leaf module that any part of iclkit may import (the top-level
package re-exports everything, so importing it from below would run the arrows backwards)."""

from __future__ import annotations

__version__ = "0.1.0"
