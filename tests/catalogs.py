"""In-memory catalogs for running pipelines in tests."""

from kedro.io import DataCatalog, MemoryDataset


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so a test can inspect intermediate outputs."""

    def _release(self) -> None:
        pass


def keeping_catalog(datasets: dict, keep: list[str]) -> DataCatalog:
    """``datasets`` plus a kept in-memory dataset for each name in ``keep``."""
    return DataCatalog({**datasets, **{name: KeptMemoryDataset() for name in keep}})
