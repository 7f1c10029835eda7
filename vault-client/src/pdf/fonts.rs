//! The Japanese font for printable records: `--font FILE`, else `LOCKER_PDF_FONT`, else the
//! first of the Debian packages' fonts that is installed (fonts-ipaexfont-gothic,
//! fonts-ipaexfont-mincho, fonts-noto-cjk).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ClientError;

/// Where Debian installs Japanese fonts, in order of preference; (path, face index).
const SYSTEM_FONTS: &[(&str, u32)] = &[
    ("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf", 0),
    ("/usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf", 0),
    // Face 0 of the collection is Japanese.
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 0),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", 0),
];

/// The font to print with.
pub fn find_font(configured: Option<&Path>) -> Result<krilla::text::Font, ClientError> {
    let from_env = std::env::var_os("LOCKER_PDF_FONT").map(PathBuf::from);
    let (path, index) = match configured.map(Path::to_owned).or(from_env) {
        Some(path) => (path, 0),
        None => SYSTEM_FONTS
            .iter()
            .map(|(path, index)| (PathBuf::from(path), *index))
            .find(|(path, _)| path.exists())
            .ok_or_else(|| {
                ClientError::Usage(
                    "no Japanese font found: install fonts-ipaexfont-gothic (Debian), or give --font FILE.ttf (or LOCKER_PDF_FONT)"
                        .into(),
                )
            })?,
    };
    let bytes = std::fs::read(&path).map_err(|source| ClientError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    krilla::text::Font::new(Arc::new(bytes).into(), index).ok_or_else(|| {
        ClientError::Usage(format!(
            "{} is not a font krilla can read (TrueType or OpenType)",
            path.display()
        ))
    })
}
