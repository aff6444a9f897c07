"""Issuing state and nationality codes accepted in an MRZ.

ISO 3166-1 alpha-3 codes, plus the codes ICAO Doc 9303 part 3 adds: `D<<`
for Germany, `GBD`/`GBN`/`GBO`/`GBP`/`GBS` for British nationality classes,
`RKS` (Kosovo), `EUE` (European Union), `UNO`/`UNA`/`UNK` (United Nations),
the `XX*` codes for stateless persons, refugees and unspecified
nationality, the organisations `XBA`, `XIM`, `XCC`, `XCE`, `XCO`, `XEC`,
`XES`, `XMP`, `XOM`, `XPO`, `XSM`, and `UTO`, the fictional state of ICAO's
specimen documents.
"""

from __future__ import annotations

_ISO_3166 = """
ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI BEL BEN
BES BFA BGD BGR BHR BHS BIH BLM BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN
CCK CHE CHL CHN CIV CMR COD COG COK COL COM CPV CRI CUB CUW CXR CYM CYP CZE DEU
DJI DMA DNK DOM DZA ECU EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR
GEO GGY GHA GIB GIN GLP GMB GNB GNQ GRC GRD GRL GTM GUF GUM GUY HKG HMD HND HRV
HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL ISR ITA JAM JEY JOR JPN KAZ KEN KGZ KHM
KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO LTU LUX LVA MAC MAF MAR MCO MDA
MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR MTQ MUS MWI MYS MYT NAM
NCL NER NFK NGA NIC NIU NLD NOR NPL NRU NZL OMN PAK PAN PCN PER PHL PLW PNG POL
PRI PRK PRT PRY PSE PYF QAT REU ROU RUS RWA SAU SDN SEN SGP SGS SHN SJM SLB SLE
SLV SMR SOM SPM SRB SSD STP SUR SVK SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK
TKL TKM TLS TON TTO TUN TUR TUV TWN TZA UGA UKR UMI URY USA UZB VAT VCT VEN VGB
VIR VNM VUT WLF WSM YEM ZAF ZMB ZWE
"""

_ICAO_EXTRA = """
D<< GBD GBN GBO GBP GBS RKS EUE UNO UNA UNK XXA XXB XXC XXX XBA XIM XCC XCE XCO
XEC XES XMP XOM XPO XSM UTO
"""

KNOWN_CODES: frozenset[str] = frozenset((_ISO_3166 + _ICAO_EXTRA).split())

SPECIMEN_CODE = "UTO"


def is_known_code(code: str) -> bool:
    """Tell whether `code` (three characters, fillers included) is a known
    issuing state or nationality code."""
    return code in KNOWN_CODES
