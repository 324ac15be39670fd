"""What the reader shows: the screen texts of its refusals and notices, one home for each.

Why a module: the same messages are judged by the conformance suite and shown by the MQTT
agent, so tests and vendors compare against these names rather than copying the text.
"""

MSG_NOT_MY_NUMBER = "マイナンバーカード以外のカードです。マイナンバーカードを置いてください。"
MSG_JUKI = "住基カードは保険証として利用できません。マイナンバーカードを置いてください。"
MSG_SMARTPHONE = "スマートフォンのマイナ保険証は汎用カードリーダーにかざしてください。"
MSG_UNREADABLE = "マイナンバーカードを認識できません。カードを置き直してください。"
MSG_EXPIRING = (
    "証明書の有効期限が3か月以内となっています。市区町村の窓口で更新手続きをお願いします。"
)
MSG_GRACE = (
    "証明書の有効期限が切れています(猶予期間中)。資格情報のみ確認します。"
    "市区町村の窓口で更新してください。"
)
MSG_CERT_INVALID = (
    "利用者証明用電子証明書の失効・有効期限切れです。資格確認書または保険証をお出しください。"
)
MSG_PIN_LOCKED = "暗証番号がロックされています。市区町村の窓口でロックを解除してください。"
MSG_BACKEND = "資格確認ができませんでした(システムに接続できません)。受付にお声がけください。"
MSG_MISLINKED = "カードの本人情報と資格情報が一致しません。受付にお声がけください。"
