"""kvserve's developer tools. Only tools/reference/ is Python; this file makes `tools` a regular
package so that `python3 -m tools.reference...` from the repository root never resolves to some
other installed `tools`."""
