"""Write the vendor-format ECG fixtures in tests/data/ecg/ from real PTB-XL records (CC BY 4.0).

No GE MUSE, GE CardioSoft, HL7 aECG or SCP-ECG file ships with the project's data, so these are written here as
a cart writes them (element names, units, encodings as the formats document them), around real
waveforms: PTB-XL records 3 (normal, sinus rhythm), 2 (sinus bradycardia), 4 (normal) and 5 (normal,
SCP-ECG: uncompressed 16-bit amplitudes, no Huffman table, as EN 1064 allows). The
"cart measurements" in them are the values this script states below: plausible for the record,
written to test the readers, NOT a cart's output and not a reference for measurement accuracy.

    PYTHONPATH=. python scripts/make_ecg_fixtures.py [--ptbxl ../shared/data/ecg/ptbxl]
"""

# ruff: noqa: E501 - the XML templates are written as a cart writes them, one element per line
from __future__ import annotations

import argparse
import base64
import binascii
import struct
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import wfdb

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "ecg"
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _signals_uv(ptbxl: Path, ecg_id: int) -> tuple[np.ndarray, float]:
    """(12 × n µV in LEADS order, Hz) of a PTB-XL 500 Hz record."""
    record = wfdb.rdrecord(str(ptbxl / "records500" / "00000" / f"{ecg_id:05d}_hr"))
    names = [n.upper() for n in record.sig_name]
    rows = [record.p_signal[:, names.index(lead.upper())] * 1000.0 for lead in LEADS]
    return np.vstack(rows), float(record.fs)


# What a MUSE export holds before its waveform: the patient, the test, the cart's measurements and
# statements (the values this script states, see the module docstring).
_MUSE_HEAD = """<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE RestingECG SYSTEM "restecg.dtd">
<RestingECG>
   <MuseInfo><MuseVersion>9.0.10.18474</MuseVersion></MuseInfo>
   <PatientDemographics>
      <PatientID>GZ-0003</PatientID>
      <PatientAge>37</PatientAge>
      <AgeUnits>YEARS</AgeUnits>
      <Gender>FEMALE</Gender>
      <PatientLastName>TEST</PatientLastName>
      <PatientFirstName>MUSE</PatientFirstName>
   </PatientDemographics>
   <TestDemographics>
      <DataType>RESTING</DataType>
      <Site>3</Site>
      <SiteName>Township clinic</SiteName>
      <AcquisitionDevice>MAC2000</AcquisitionDevice>
      <Status>UNCONFIRMED</Status>
      <Priority>NORMAL</Priority>
      <AcquisitionTime>10:32:47</AcquisitionTime>
      <AcquisitionDate>12-03-2026</AcquisitionDate>
      <AcquisitionSoftwareVersion>010B</AcquisitionSoftwareVersion>
      <AnalysisSoftwareVersion>243</AnalysisSoftwareVersion>
   </TestDemographics>
   <RestingECGMeasurements>
      <VentricularRate>64</VentricularRate>
      <AtrialRate>64</AtrialRate>
      <PRInterval>158</PRInterval>
      <QRSDuration>90</QRSDuration>
      <QTInterval>392</QTInterval>
      <QTCorrected>404</QTCorrected>
      <PAxis>52</PAxis>
      <RAxis>61</RAxis>
      <TAxis>44</TAxis>
      <QRSCount>11</QRSCount>
      <QOnset>222</QOnset>
      <QOffset>267</QOffset>
      <POnset>143</POnset>
      <POffset>195</POffset>
      <TOffset>418</TOffset>
      <ECGSampleBase>500</ECGSampleBase>
      <ECGSampleExponent>0</ECGSampleExponent>
      <QTcFrederica>400</QTcFrederica>
   </RestingECGMeasurements>
   <Diagnosis>
      <Modality>RESTING</Modality>
      <DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Normal sinus rhythm</StmtText></DiagnosisStatement>
      <DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Normal ECG</StmtText></DiagnosisStatement>
   </Diagnosis>
"""


def _muse_lead(lead: str, counts: np.ndarray, per_bit: float) -> str:
    """One MUSE <LeadData>: int16 little-endian samples, base64, at ``per_bit`` µV per count."""
    return f"""      <LeadData>
         <LeadByteCountTotal>{counts.nbytes}</LeadByteCountTotal>
         <LeadTimeOffset>0</LeadTimeOffset>
         <LeadSampleCountTotal>{counts.size}</LeadSampleCountTotal>
         <LeadAmplitudeUnitsPerBit>{per_bit}</LeadAmplitudeUnitsPerBit>
         <LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>
         <LeadHighLimit>32767</LeadHighLimit>
         <LeadLowLimit>-32768</LeadLowLimit>
         <LeadID>{lead}</LeadID>
         <LeadOffsetFirstSample>0</LeadOffsetFirstSample>
         <FirstSampleBaseline>0</FirstSampleBaseline>
         <LeadSampleSize>2</LeadSampleSize>
         <LeadOff>FALSE</LeadOff>
         <BaselineSway>FALSE</BaselineSway>
         <WaveFormData>{base64.b64encode(counts.tobytes()).decode()}</WaveFormData>
      </LeadData>"""


def ge_muse(ptbxl: Path) -> str:
    """GE MUSE XML: 8 stored leads (I, II, V1-V6), int16 little-endian base64 at 4.88 µV per bit."""
    uv, rate = _signals_uv(ptbxl, 3)
    per_bit = 4.88
    lead_xml = []
    for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"):
        counts = np.round(uv[LEADS.index(lead)] / per_bit).astype("<i2")
        lead_xml.append(_muse_lead(lead, counts, per_bit))
    waveform = f"""   <Waveform>
      <WaveformType>Rhythm</WaveformType>
      <WaveformStartTime>0</WaveformStartTime>
      <NumberofLeads>8</NumberofLeads>
      <SampleType>CONTINUOUS_SAMPLES</SampleType>
      <SampleBase>{int(rate)}</SampleBase>
      <SampleExponent>0</SampleExponent>
      <HighPassFilter>16</HighPassFilter>
      <LowPassFilter>150</LowPassFilter>
      <ACFilter>50</ACFilter>
{chr(10).join(lead_xml)}
   </Waveform>
</RestingECG>
"""
    return _MUSE_HEAD + waveform


def ge_cardiosoft(ptbxl: Path) -> str:
    """GE CardioSoft XML: 12 leads as comma-separated integers at 5 µV per LSB."""
    uv, rate = _signals_uv(ptbxl, 2)
    strips = "\n".join(
        f'    <WaveformData lead="{lead}">{",".join(str(int(v)) for v in np.round(uv[i] / 5.0))}</WaveformData>'
        for i, lead in enumerate(LEADS)
    )
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE CardiologyXML SYSTEM "CardiologyXML.dtd">
<CardiologyXML>
  <ObservationType>RestECG</ObservationType>
  <ObservationDateTime><Hour>9</Hour><Minute>12</Minute><Second>5</Second><Day>3</Day><Month>12</Month><Year>2026</Year></ObservationDateTime>
  <PatientInfo>
    <PID>GZ-0002</PID>
    <Name><FamilyName>TEST</FamilyName><GivenName>CARDIOSOFT</GivenName></Name>
    <Age units="years">19</Age>
    <Gender>MALE</Gender>
  </PatientInfo>
  <RestingECGMeasurements>
    <DiagnosisVersion>GEMS_12SL_V23</DiagnosisVersion>
    <VentricularRate units="BPM">54</VentricularRate>
    <PQInterval units="ms">164</PQInterval>
    <PDuration units="ms">102</PDuration>
    <QRSDuration units="ms">94</QRSDuration>
    <QTInterval units="ms">428</QTInterval>
    <QTCInterval units="ms">405</QTCInterval>
    <RRInterval units="ms">1111</RRInterval>
    <PPInterval units="ms">1110</PPInterval>
    <PAxis units="degrees">48</PAxis>
    <RAxis units="degrees">72</RAxis>
    <TAxis units="degrees">41</TAxis>
  </RestingECGMeasurements>
  <Interpretation>
    <Diagnosis>
      <DiagnosisText>Sinus bradycardia</DiagnosisText>
      <DiagnosisText>Otherwise normal ECG</DiagnosisText>
    </Diagnosis>
    <Conclusion><ConclusionText>Borderline ECG</ConclusionText></Conclusion>
  </Interpretation>
  <StripData>
    <NumberOfLeads>12</NumberOfLeads>
    <SampleRate units="Hz">{int(rate)}</SampleRate>
    <ChannelSampleCountTotal>{uv.shape[1]}</ChannelSampleCountTotal>
    <Resolution units="uVperLsb">5</Resolution>
{strips}
  </StripData>
</CardiologyXML>
"""


# The device's global measurements in the aECG fixture (MDC code, value, unit): stated here, not a cart's output.
_AECG_MEASUREMENTS = (
    ("MDC_ECG_HEART_RATE", 71, "bpm"),
    ("MDC_ECG_TIME_PD_PR", 150, "ms"),
    ("MDC_ECG_TIME_PD_QRS", 88, "ms"),
    ("MDC_ECG_TIME_PD_QT", 378, "ms"),
    ("MDC_ECG_TIME_PD_QTcB", 411, "ms"),
    ("MDC_ECG_TIME_PD_QTcF", 400, "ms"),
    ("MDC_ECG_ANGLE_P_FRONT", 55, "deg"),
    ("MDC_ECG_ANGLE_QRS_FRONT", 68, "deg"),
    ("MDC_ECG_ANGLE_T_FRONT", 47, "deg"),
)


def _aecg_measurement(code: str, value: float, unit: str) -> str:
    return (
        f'<component><annotation><code code="{code}" codeSystem="2.16.840.1.113883.6.24"/>'
        f'<value xsi:type="PQ" value="{value:g}" unit="{unit}"/></annotation></component>'
    )


def hl7_aecg(ptbxl: Path) -> str:
    """HL7 aECG: TIME_ABSOLUTE GLIST_TS + one SLIST_PQ (origin 0 uV, scale 5 uV) per lead, and a
    device-authored annotation set with global measurements and statements."""
    uv, rate = _signals_uv(ptbxl, 4)
    sequences = "\n".join(
        f'          <component><sequence><code code="MDC_ECG_LEAD_{lead.upper()}" codeSystem="2.16.840.1.113883.6.24"/>'
        f'<value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="5" unit="uV"/>'
        f"<digits>{' '.join(str(int(v)) for v in np.round(uv[i] / 5.0))}</digits></value></sequence></component>"
        for i, lead in enumerate(LEADS)
    )
    measurements = "".join(_aecg_measurement(*m) for m in _AECG_MEASUREMENTS)
    statements = "".join(
        f'<component><annotation><code code="MDC_ECG_INTERPRETATION_STATEMENT" codeSystem="2.16.840.1.113883.6.24"/>'
        f'<value xsi:type="ST">{escape(text)}</value></annotation></component>'
        for text in ("Sinus rhythm", "Normal ECG")
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" classCode="OBS" moodCode="EVN">
  <id root="2.25.148032195431869361283510186398118911823"/>
  <code code="93000" codeSystem="2.16.840.1.113883.6.12" codeSystemName="CPT-4"/>
  <effectiveTime><low value="20261203103247"/><high value="20261203103257"/></effectiveTime>
  <componentOf><timepointEvent><componentOf><subjectAssignment><subject><trialSubject>
    <id root="2.25.1" extension="GZ-0004"/>
    <subjectDemographicPerson><administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="20020615"/></subjectDemographicPerson>
  </trialSubject></subject></subjectAssignment></componentOf></timepointEvent></componentOf>
  <component>
    <series>
      <id root="2.25.148032195431869361283510186398118911824"/>
      <code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>
      <effectiveTime><low value="20261203103247"/><high value="20261203103257"/></effectiveTime>
      <author><seriesAuthor><manufacturedSeriesDevice><id root="2.25.2" extension="SN-1234"/>
        <manufacturerModelName>ECG-1250</manufacturerModelName><softwareName>ECAPS12C 4.2</softwareName>
      </manufacturedSeriesDevice><manufacturerOrganization><name>Example cart maker</name></manufacturerOrganization></seriesAuthor></author>
      <component>
        <sequenceSet>
          <component><sequence><code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/><value xsi:type="GLIST_TS"><head value="20261203103247.000"/><increment value="{1.0 / rate:g}" unit="s"/></value></sequence></component>
{sequences}
        </sequenceSet>
      </component>
      <subjectOf><annotationSet>
        <activityTime value="20261203103258"/>
        <author><assignedEntity><assignedAuthorType><assignedDevice><manufacturerModelName>ECG-1250</manufacturerModelName></assignedDevice></assignedAuthorType></assignedEntity></author>
        {measurements}
        <component><annotation><code code="MDC_ECG_INTERPRETATION" codeSystem="2.16.840.1.113883.6.24"/>{statements}</annotation></component>
      </annotationSet></subjectOf>
    </series>
  </component>
</AnnotatedECG>
"""


# SCP-ECG lead codes (EN 1064 table 3): I, II, V1-V6 = 1, 2, 3-8; III, aVR, aVL, aVF = 61-64.
_SCP_LEAD_CODES = {
    "I": 1,
    "II": 2,
    "V1": 3,
    "V2": 4,
    "V3": 5,
    "V4": 6,
    "V5": 7,
    "V6": 8,
    "III": 61,
    "aVR": 62,
    "aVL": 63,
    "aVF": 64,
}


def _scp_section(section_id: int, body: bytes, reserved: bytes = b"\x00" * 6) -> bytes:
    """CRC, id, length, section version 20, protocol version 20, 6 reserved bytes, then the body."""
    rest = struct.pack("<HIBB", section_id, 16 + len(body), 20, 20) + reserved + body
    return struct.pack("<H", binascii.crc_hqx(rest, 0xFFFF)) + rest


def _scp_tag(tag: int, value: bytes) -> bytes:
    return struct.pack("<BH", tag, len(value)) + value


def scp_ecg(ptbxl: Path) -> bytes:
    """SCP-ECG 2.0: sections 1 (patient, acquisition), 3 (12 leads, simultaneous), 6 (int16 at 5 uV,
    500 Hz, no difference coding), 7 (RR/PP and the median beat's boundaries and axes), 8 (statements)."""
    uv, rate = _signals_uv(ptbxl, 5)
    n = uv.shape[1]
    sections = {
        1: b"".join(
            [
                _scp_tag(2, b"GZ-0005\x00"),
                _scp_tag(4, struct.pack("<HB", 19, 1)),
                _scp_tag(8, bytes([2])),
                _scp_tag(25, struct.pack("<HBB", 2026, 12, 3)),
                _scp_tag(26, bytes([10, 32, 47])),
                _scp_tag(255, b""),
            ]
        ),
        3: bytes([12, 0x04]) + b"".join(struct.pack("<IIB", 1, n, _SCP_LEAD_CODES[lead]) for lead in LEADS),
        6: struct.pack("<HHBB", 5000, int(1_000_000 / rate), 0, 0)
        + struct.pack("<12H", *([2 * n] * 12))
        + b"".join(np.round(uv[i] / 5.0).astype("<i2").tobytes() for i in range(12)),
        7: struct.pack("<BBHH", 1, 0, 857, 857) + struct.pack("<5H3h", 120, 222, 262, 350, 660, 60, 70, 50),
        8: struct.pack("<BHBBBBBB", 0, 2026, 12, 3, 10, 32, 47, 2)
        + b"".join(
            struct.pack("<BH", i + 1, len(text) + 1) + text + b"\x00"
            for i, text in enumerate((b"Sinus rhythm", b"Normal ECG"))
        ),
    }
    ids = list(range(12))
    offset = 6 + 16 + 10 * len(ids)  # after the preamble and section 0 (0-based)
    pointers, chunks = [], []
    for section_id in ids[1:]:
        chunk = _scp_section(section_id, sections[section_id]) if section_id in sections else b""
        pointers.append(struct.pack("<HII", section_id, len(chunk), offset + 1 if chunk else 0))
        chunks.append(chunk)
        offset += len(chunk)
    section0 = _scp_section(0, struct.pack("<HII", 0, 16 + 10 * len(ids), 7) + b"".join(pointers), b"SCPECG")
    body = section0 + b"".join(chunks)
    size = 6 + len(body)
    rest = struct.pack("<I", size) + body
    return struct.pack("<H", binascii.crc_hqx(rest, 0xFFFF)) + rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptbxl", type=Path, default=REPO.parent / "shared" / "data" / "ecg" / "ptbxl")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in (
        ("ge_muse_rest.xml", ge_muse),
        ("ge_cardiosoft_rest.xml", ge_cardiosoft),
        ("hl7_aecg_rest.xml", hl7_aecg),
    ):
        (OUT / name).write_text(build(args.ptbxl), encoding="utf-8" if "aecg" in name else "latin-1")
        print(f"wrote {OUT / name}")
    (OUT / "scp_ecg_rest.scp").write_bytes(scp_ecg(args.ptbxl))
    print(f"wrote {OUT / 'scp_ecg_rest.scp'}")


if __name__ == "__main__":
    main()
