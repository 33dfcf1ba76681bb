"""Bad notes get a clear error or a warning, never a crash."""
import pytest

from models.notes import MAX_NOTE_CHARS, NoteError, check_note, read_note_file


def test_a_normal_note_passes_without_warnings():
    checked = check_note("Patient with a history of hypertension presents with chest pain. "
                         "She denies fever and was admitted for the evaluation of the pain.")
    assert checked.warnings == []


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_note(text):
    with pytest.raises(NoteError, match="empty"):
        check_note(text)


def test_huge_note_names_the_limit():
    with pytest.raises(NoteError, match="200,000"):
        check_note("pain " * 40_001)
    assert check_note("pain " * 1000 + "of the patient") is not None
    assert MAX_NOTE_CHARS == 200_000


def test_binary_note():
    with pytest.raises(NoteError, match="binary"):
        check_note("abc\x00def")
    with pytest.raises(NoteError, match="binary"):
        check_note("".join(chr(i % 31 + 1) for i in range(500)))


def test_non_english_note_warns():
    spanish = ("Varón de 37 años que consulta por dolor osteoarticular de localización variable "
               "en el último mes y fiebre en la última semana con picos de 40 grados. Refiere "
               "estancia en una zona endémica de brucelosis con consumo de leche sin pasteurizar.")
    assert any("English" in w for w in check_note(spanish).warnings)


def test_non_utf8_file_is_read_with_a_warning(tmp_path):
    path = tmp_path / "note.txt"
    path.write_bytes("Patient has café-au-lait spots and a history of the fever.".encode("cp1252"))
    checked = read_note_file(path)
    assert "café" in checked.text
    assert "not UTF-8" in checked.warnings[0]


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"%PDF-1.7\x00\x01\x02binary")
    with pytest.raises(NoteError, match="binary file"):
        read_note_file(path)
