"""The columns of the inventory's CSV files and the options an export is written with.

What the import takes and the export writes, so that an export imports back as it was:
the columns of each kind in export order (the first ones required on import), the
Spanish and other header names a ministry's spreadsheet may use instead, and
:class:`CsvOptions` (delimiter, decimal mark, byte order mark). The delimiters and decimal
marks themselves are the shared CSV dialect of :mod:`labtext.csvtext`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from inventory.errors import InvalidValueError
from labtext.csvtext import DECIMALS, DELIMITERS, check_delimiter

__all__ = ["ALIASES", "COLUMNS", "DECIMALS", "DELIMITERS", "KINDS", "REQUIRED", "VALUE_WORDS",
           "CsvOptions", "Kind", "checked_delimiter"]

Kind = Literal["sites", "models", "assets"]
KINDS: tuple[str, ...] = ("sites", "models", "assets")

# The columns of each kind, in export order; the first ones are required on import.
COLUMNS: dict[str, tuple[str, ...]] = {
    "sites": ("code", "name", "kind", "parent", "tier", "rural", "latitude", "longitude",
              "institution", "rollout_status"),
    "models": ("code", "name", "category", "tracking", "unit"),
    "assets": ("tag", "model", "site", "serial_number", "status", "condition", "notes"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "sites": ("code", "name", "kind"),
    "models": ("code", "name", "category"),
    "assets": ("tag", "model", "site"),
}
# Header names a ministry's spreadsheet may use instead (compared without case, accents,
# spaces or dashes: "Código", "NÚMERO DE SERIE" and "numero_serie" all match).
ALIASES: dict[str, str] = {
    "codigo": "code", "cod": "code", "nombre": "name", "tipo": "kind", "clase": "kind",
    "padre": "parent", "parent_code": "parent", "codigo_padre": "parent", "nivel": "tier",
    "ruralidad": "rural", "zona_rural": "rural", "latitud": "latitude", "lat": "latitude",
    "longitud": "longitude", "lon": "longitude", "lng": "longitude",
    "institucion": "institution", "institucion_educativa": "institution",
    "estado_despliegue": "rollout_status", "despliegue": "rollout_status",
    "categoria": "category", "seguimiento": "tracking", "unidad": "unit",
    "etiqueta": "tag", "placa": "tag", "asset_tag": "tag", "modelo": "model",
    "model_code": "model", "codigo_modelo": "model", "sede": "site", "sitio": "site",
    "site_code": "site", "codigo_sede": "site", "serial": "serial_number", "serie": "serial_number",
    "numero_serie": "serial_number", "numero_de_serie": "serial_number",
    "estado": "status", "condicion": "condition", "notas": "notes",
    "observaciones": "notes",
}

# Asset statuses and conditions as Spanish and Portuguese spreadsheets write them (compared
# folded, as header names are: "En préstamo", "EN PRESTAMO" and "en_prestamo" all match);
# the English values, with spaces or dashes for the underscores, match without a word here.
# A status a person may not set by hand (on_loan, in_repair) is still refused, in any
# language: the loan or repair behind it must be recorded (see inventory.assets).
VALUE_WORDS: dict[str, dict[str, str]] = {
    "status": {
        # es
        "disponible": "available", "en_prestamo": "on_loan", "prestado": "on_loan",
        "prestada": "on_loan", "en_transito": "in_transit", "en_reparacion": "in_repair",
        "en_mantenimiento": "in_repair", "perdido": "lost", "perdida": "lost",
        "extraviado": "lost", "extraviada": "lost", "dado_de_baja": "retired",
        "dada_de_baja": "retired", "de_baja": "retired", "retirado": "retired",
        "retirada": "retired",
        # pt
        "disponivel": "available", "emprestado": "on_loan", "emprestada": "on_loan",
        "em_emprestimo": "on_loan", "em_transito": "in_transit", "em_reparo": "in_repair",
        "em_conserto": "in_repair", "em_manutencao": "in_repair", "extraviado_pt": "lost",
        "baixado": "retired", "baixada": "retired", "descartado": "retired",
        "descartada": "retired",
    },
    "condition": {
        # es
        "bueno": "good", "buena": "good", "buen_estado": "good", "regular": "fair",
        "aceptable": "fair", "malo": "poor", "mala": "poor", "deteriorado": "poor",
        "deteriorada": "poor", "danado": "broken", "danada": "broken", "roto": "broken",
        "rota": "broken", "averiado": "broken", "averiada": "broken",
        # pt
        "bom": "good", "boa": "good", "razoavel": "fair", "ruim": "poor", "ma": "poor",
        "desgastado": "poor", "desgastada": "poor", "quebrado": "broken",
        "quebrada": "broken", "danificado": "broken", "danificada": "broken",
        "avariado": "broken", "avariada": "broken",
    },
}


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How an export is written: delimiter, decimal mark, byte order mark.

    A decimal comma may go with a comma delimiter here: the writer quotes such numbers
    (``"3,45"``) and the import reads them back.
    """

    delimiter: str = ","
    decimal: str = "."
    bom: bool = False

    def __post_init__(self) -> None:
        checked_delimiter(self.delimiter)
        if self.decimal not in DECIMALS:
            raise InvalidValueError(f"decimal mark {self.decimal!r} is not . or ,")


def checked_delimiter(delimiter: str) -> str:
    """``delimiter`` if it is one of , ; or tab, else InvalidValueError naming them."""
    try:
        return check_delimiter(delimiter)
    except ValueError as exc:
        raise InvalidValueError(str(exc)) from None
